# LakeRec: `make demo` runs the whole pipeline on the embedded default, `make serve` serves its
# recommender on http://127.0.0.1:5000 (PORT=...), `make sql-server` the lake over JDBC/ODBC
# (SQL_PORT=...), `make test` the tests.
# Each does all set-up first (venv, pinned packages, Delta and Derby jars, Azurite) and skips it when done.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
LAKE ?= lake
# Test modules run on this many processes (pytest-xdist, one module per process at a time):
# each holds its own Spark JVM and TensorFlow, about 4 GiB at peak.
TEST_WORKERS ?= 2
# The workflow linter tests/test_workflows.py runs, built from source with Go when Go is on PATH.
ACTIONLINT := github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup demo serve sql-server test bench clean

# delta-rs and DuckDB beside the project (README "Other engines read the lake"): a venv of
# their own, since deltalake needs a newer pyarrow than requirements.txt pins.
VENV_DELTALAKE ?= .venv-deltalake

# The Spark driver's classes, archived once for this Java and class path (lakerec.class_archive):
# every later Spark start maps them instead of loading them, about 4-5 s sooner. Kept when present.
setup: $(VENV)/.installed $(VENV_DELTALAKE)/.installed
	@$(PY) -m lakerec.class_archive >/dev/null

$(VENV_DELTALAKE)/.installed: requirements-deltalake.txt
	$(PYTHON) -m venv $(VENV_DELTALAKE)
	$(VENV_DELTALAKE)/bin/python -m pip install -q -r requirements-deltalake.txt
	cp requirements-deltalake.txt $@  # the test reuses the venv while this matches the file

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml package.json
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 (or make PYTHON=/path/to/python3.11)"; exit 2; }
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || { echo "error: Java not found: Spark needs Java 17 (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .  # lakerec importable from anywhere (notebooks, bench)
	$(PY) -m lakerec.jars
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent; else echo "warning: npm not found: Azure Blob tests need Azurite (npm)"; fi
	@if command -v go >/dev/null; then GOBIN=$(abspath $(VENV))/bin go install $(ACTIONLINT); else echo "warning: go not found: the workflow lint test needs actionlint (go install $(ACTIONLINT))"; fi
	touch $@

demo: setup
	$(PY) -m lakerec.jobs.demo --lake $(LAKE)

PORT ?= 5000
serve: setup
	$(PY) -m lakerec.jobs.serve --lake $(LAKE) --port $(PORT)

# The lake over JDBC/ODBC (Spark's Thrift server) on 127.0.0.1:$(SQL_PORT), until Ctrl-C.
SQL_PORT ?= 10000
sql-server: setup
	$(PY) -m lakerec.jobs.sql_server --lake $(LAKE) --sql-port $(SQL_PORT)

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The benchmarks import the test fixtures (tests/) beside the package.
bench: export PYTHONPATH := $(CURDIR)
bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/exploded_views.py
	$(PY) bench/train_feed.py
	$(PY) bench/evaluate.py
	$(PY) bench/oracle_recall.py
	$(PY) bench/quality.py
	$(PY) bench/rank_feed.py
	$(PY) bench/rank_memory.py
	$(PY) bench/rank_quality.py
	$(PY) bench/serve.py
	$(PY) bench/sql_endpoint.py

clean:
	-@[ ! -d $(LAKE) ] || [ ! -x $(PY) ] || $(PY) -m lakerec.jobs.metastore stop --lake $(LAKE)
	rm -rf $(LAKE) data/raw spark-warehouse metastore_db derby.log .pytest_cache
