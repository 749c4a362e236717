"""Shared fixtures: one real local Spark session with Delta and a Derby catalog per test run.

Tables live under a temporary lake; each test gets its own database in it, so tests do not
see each other's tables while sharing one JVM (a session start costs seconds).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from pathlib import Path

import pytest

import lakerec  # noqa: F401  (first: it sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)
from lakerec.config import load_config, override

REPO = Path(__file__).resolve().parent.parent

_db_counter = itertools.count()


def module_seconds(item) -> float:
    """A module's time in a full run (its `heavy(seconds=N)` marker), 0 when unmarked."""
    marker = item.get_closest_marker("heavy")
    return float(marker.kwargs.get("seconds", 0)) if marker else 0.0


def pytest_collection_modifyitems(config, items):
    """The longest modules first (their `heavy(seconds=N)`), then the rest by test count, most first.

    `make test` runs whole modules on 2 xdist workers (`--dist loadfile`) in this order (the
    scheduler below), and a worker takes the next module when it reaches its current one's last
    test: the longest-first rule that leaves short modules for the end, so the two workers
    finish close together. With xdist's own order (by number of tests) and its early hand-out
    (a worker queued its next module two tests ahead), the one-test consistency module (4-5
    minutes) started last, on one worker, while the other had nothing left.
    """
    tests = Counter(item.path for item in items)
    items.sort(key=lambda item: (-module_seconds(item), -tests[item.path]))  # stable: a module stays together


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Modules in collection order (above), each handed to a worker when it reaches its last test.

    Only for `--dist loadfile` (`make test`); any other mode keeps xdist's own scheduler. It
    overrides internals of xdist's LoadScopeScheduling (`_reschedule`, `_pending_of`): the
    version is pinned in requirements-dev.txt.
    """
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def __init__(self, config, log=None):
            super().__init__(config, log)
            config.option.loadscopereorder = False  # keep pytest_collection_modifyitems' order

        def _reschedule(self, node):
            # xdist hands out the next module while two tests are still pending; a worker holds its
            # last test until it knows the next one (for fixture teardown), so 1 is when it waits.
            if not node.shutting_down and self.workqueue and self._pending_of(self.assigned_work[node]) > 1:
                return
            super()._reschedule(node)

    return LongestFirst(config, log)


@pytest.fixture(scope="session", autouse=True)
def stop_catalog_servers(tmp_path_factory):
    """Stop, after the run, the catalog servers (lakerec.metastore) the tests' lakes started:
    they are detached and would outlive the run (until their lake folder is deleted)."""
    yield
    from lakerec import metastore

    metastore.stop_all_under(tmp_path_factory.getbasetemp())


# The JIT of the Spark JVMs the tests start in fresh processes (notebook kernels, the CLI
# runs, the consistency kills): each lives for a few tiny jobs, where compiling with C1 only
# pays back sooner than tiered C2 (measured, one fresh process each, idle machine: an ingest of
# 2,000 impressions 27.0 -> 21.5 s, a `jobs.sql` query 14.8 -> 11.9 s). The session's own JVM
# (the `spark` fixture) lives for the whole run and keeps tiered compilation: with C1 only,
# six modules took 426 s instead of 365 s. Spark's launcher adds SPARK_SUBMIT_OPTS to the
# driver's java command; a value set before the run is kept.
FRESH_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


@pytest.fixture(scope="session", autouse=True)
def quick_jit_in_fresh_jvms():
    os.environ.setdefault("SPARK_SUBMIT_OPTS", FRESH_JVM_OPTIONS)


@pytest.fixture(scope="session")
def lake(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="session")
def base_cfg(lake):
    cfg = load_config(REPO / "conf" / "local.yml", lake=str(lake), database="lakerec_test")
    return override(cfg, spark__master="local[2]", spark__shuffle_partitions=2, spark__driver_memory="3g")


@pytest.fixture(scope="session")
def spark(base_cfg):
    from lakerec.spark import get_spark

    ours = os.environ.get("SPARK_SUBMIT_OPTS") == FRESH_JVM_OPTIONS
    if ours:
        del os.environ["SPARK_SUBMIT_OPTS"]  # tiered JIT: this JVM lives for the whole run (above)
    try:
        session = get_spark(base_cfg)
    finally:
        if ours:
            os.environ["SPARK_SUBMIT_OPTS"] = FRESH_JVM_OPTIONS
    yield session
    session.stop()


@pytest.fixture()
def cfg(base_cfg, spark):
    """A config whose database is this test's own (created in the shared session)."""
    c = override(base_cfg, database=f"t{next(_db_counter)}_{os.getpid()}")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {c.database}")
    return c
