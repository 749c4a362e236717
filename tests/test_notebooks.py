"""The notebooks, executed end to end on a small generated lake, as a user would run them.

A subprocess builds the lake once (generate -> ingest -> filter -> impressions), because each notebook runs
in its own kernel process that opens its own Spark session on that lake: the notebooks run
one after the other, and each starts only after the previous kernel's JVM has gone (its memory
freed; the lake's catalog server would admit several). Every cell must succeed
(nbclient raises on the first failing cell). A probe cell appended to each notebook prints
what the notebook computed, which is checked against the raw files and the MLflow store.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml

from lakerec import metastore, notebook_runner as notebook
from lakerec.schema.fields import FEATURE_SEP, FIELD_SEP, VALUE_SEP

pytestmark = pytest.mark.heavy(seconds=420)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
DATABASE = "nb"
IMPRESSIONS, USERS, ITEMS = 10_000, 200, 500  # small: every notebook step is fixed cost at this size
K = 10
PROBE = "LAKEREC-PROBE "
RANKER = "lakerec-notebooks-ranker"

BUILD_LAKE = """
import sys
from lakerec import filtering, impressions as impressions_job, ingest
from lakerec.aliccp.generator import generate
from lakerec.config import load_config
from lakerec.spark import get_spark

raw, conf, impressions, users, items = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
generate(raw, impressions=impressions, users=users, items=items, seed=11)
cfg = load_config(conf)
spark = get_spark(cfg)
ingest.run(spark, cfg, raw)
print(filtering.format_summary(filtering.run(spark, cfg)))
print(impressions_job.format_summary(impressions_job.run(spark, cfg)))
spark.stop()
"""


def wait_for_lake_released(lake: Path, timeout: float = 60) -> None:
    """Wait until no Spark JVM is open on the lake (its command line names the lake): the
    lake's catalog server (lakerec.metastore), which names it too, stays up between notebooks."""
    marker = f"-Dderby.system.home={lake}"
    server = metastore.running(lake)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if server and proc.pid == server.pid:
                    continue
                if any(marker == arg for arg in proc.info["cmdline"] or ()):
                    holders.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if not holders:
            return
        time.sleep(0.5)
    raise AssertionError(f"a JVM still holds the lake {lake} after {timeout}s: {holders}")


@pytest.fixture(scope="module")
def nb_lake(tmp_path_factory):
    """A generated lake with the filter's tables, and the config file the notebooks use."""
    root = tmp_path_factory.mktemp("notebooks")
    lake, raw = root / "lake", root / "raw"
    conf = yaml.safe_load((REPO / "conf" / "local.yml").read_text())
    conf.update(lake=str(lake), database=DATABASE, raw=str(raw))
    conf["spark"].update(master="local[2]", shuffle_partitions=2, driver_memory="2g")
    conf["train"].update(epochs=1, batch_size=512, embedding_dim=16, eval_batch_size=1024, monitor_rows=512)
    # No Spark ALS in 02's table (15 iterations of rank 64): tests/test_train.py tests that baseline.
    conf.setdefault("evaluate", {})["als"] = False
    # A tiny ranker (its epochs, batch, baselines and candidates come as the notebook's parameters).
    conf["rank"].update(embedding_dim=4, deep_layers=[16], cross_layers=1, validation_rows=2000,
                        shuffle_buffer=2000, eval_batch_size=4096,
                        # 03's top-K stays the two-tower's order (what test_03 checks); the re-ranked
                        # recommend stage is tested in test_two_stage_serve.py.
                        rerank_recommendations=False)
    conf["mlflow"].update(experiment="lakerec-notebooks", registered_model="lakerec-notebooks",
                          registered_ranker=RANKER)
    conf_path = root / "conf.yml"
    conf_path.write_text(yaml.safe_dump(conf))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run(
        [sys.executable, "-c", BUILD_LAKE, str(raw), str(conf_path), str(IMPRESSIONS), str(USERS), str(ITEMS)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    wait_for_lake_released(lake)
    return {"root": root, "lake": lake, "raw": raw, "conf": conf_path}


def run_notebook(name: str, nb_lake: dict, probe: str, **params: str) -> tuple[dict, Counter, str]:
    """Execute notebooks/<name>.py with the lake's config.

    Returns:
        (what the probe printed, outputs counted by MIME type, all text the notebook showed).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(notebook.ENV_PREFIX)}
    env["LAKEREC_LOG_LEVEL"] = "WARNING"
    try:
        executed = notebook.execute(
            NOTEBOOKS / f"{name}.py", {"conf": str(nb_lake["conf"]), **params},
            extra_cells=[f"import json\nprint({PROBE!r} + json.dumps({probe}, default=str))"],
            timeout=600, env=env,
        )
    finally:
        wait_for_lake_released(nb_lake["lake"])
    outputs, texts = Counter(), []
    found = None
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime in data:
                outputs[mime] += 1
            if "image/png" in data:
                assert base64.b64decode(data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
            text = output.get("text", "")
            if output.get("output_type") == "stream" and PROBE in text:
                found = json.loads(text.split(PROBE, 1)[1].splitlines()[0])
            texts += [text] + [str(v) for mime, v in data.items() if mime.startswith("text/")]
    assert found is not None, "the probe cell printed nothing"
    return found, outputs, "\n".join(texts)


def raw_train_rows(raw: Path) -> list[tuple[int, int, str | None, str | None]]:
    """(click, conversion, item_id, position) of every impression the ingest keeps, from the bytes.

    Without planted malformed lines the only rows ingest quarantines are click=0,
    conversion=1 (the funnel anomaly), so the rest must all be in `samples`.
    """
    rows = []
    with open(raw / "sample_skeleton_train.csv", encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split(",", 5)
            click, conversion = int(cols[1]), int(cols[2])
            if click == 0 and conversion == 1:
                continue
            ids = {}
            for feat in cols[5].split(FEATURE_SEP):
                field, rest = feat.split(FIELD_SEP, 1)
                ids[field] = rest.split(VALUE_SEP, 1)[0]
            rows.append((click, conversion, ids.get("205"), ids.get("301")))
    return rows


def test_01_explore_shows_the_funnel_ctr_by_position_long_tail_and_coverage(nb_lake):
    probe = ('{"funnel": funnel.to_dict("records"), "positions": ctr_by_position.to_dict("records"), '
             '"tail": tail.to_dict("records"), "deciles": deciles.to_dict("records"), '
             '"coverage": coverage.to_dict("records")}')
    found, outputs, _ = run_notebook("01_explore", nb_lake, probe)
    assert outputs["image/png"] == 3  # CTR by position, long tail, field coverage
    assert outputs["text/html"] == 4  # funnel, CTR by position, popularity deciles, field coverage

    rows = raw_train_rows(nb_lake["raw"])
    train = next(r for r in found["funnel"] if r["split"] == "train")
    assert train["impressions"] == len(rows)
    assert train["clicks"] == sum(r[0] for r in rows)
    assert train["conversions"] == sum(r[1] for r in rows)
    assert train["items"] == len({r[2] for r in rows if r[2] is not None})

    shown = Counter(r[3] for r in rows if r[3] is not None)
    clicked = Counter(r[3] for r in rows if r[3] is not None and r[0])
    by_position = {str(r["position"]): r for r in found["positions"] if r["split"] == "train"}
    assert set(by_position) == set(shown) and len(shown) > 1
    for position, n in shown.items():
        assert by_position[position]["impressions"] == n
        assert by_position[position]["ctr"] == pytest.approx(clicked[position] / n, abs=1e-5)

    tail = found["tail"]
    assert tail[-1]["share_of_impressions"] == pytest.approx(1.0)
    assert tail[-1]["item_rank"] == train["items"]
    impressions = [r["impressions"] for r in tail]
    assert impressions == sorted(impressions, reverse=True)
    per_item = Counter(r[2] for r in rows if r[2] is not None)
    assert impressions[0] == max(per_item.values())
    assert sum(d["items"] for d in found["deciles"]) == train["items"]

    coverage = {(r["split"], r["field"]): r["coverage"] for r in found["coverage"]}
    assert {s for s, _ in coverage} == {"train", "test"}
    assert coverage[("train", "position")] == pytest.approx(
        sum(r["rows_with_field"] for r in found["coverage"] if r["split"] == "train" and r["field"] == "position")
        / len(rows))
    assert all(0.0 <= v <= 1.0 for v in coverage.values())


@pytest.fixture(scope="module")
def trained(nb_lake):
    probe = ('{"run_id": run_id, "model_version": out["model_version"], "plots": [p.name for p in plots], '
             '"evaluation": evaluation.to_dict("records"), "champion": str(out["champion"]), "rank_run_id": rank_run_id, '
             '"rank_version": rank_out["model_version"], "ranking": ranking.to_dict("records"), '
             '"rank_curves": rank_curves.to_dict("records"), "rank_plots": [p.name for p in rank_plots], '
             '"two_stage": rank_out["evaluation"]["two_stage"] is not None}')
    return run_notebook("02_train", nb_lake, probe, epochs="1", rank_epochs="1", rank_batch_size="1024",
                        logistic_regression="false", candidates="20")


def test_02_train_logs_both_models_with_curves_and_their_versus_baselines_tables(nb_lake, trained):
    from mlflow.tracking import MlflowClient

    found, outputs, text = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{nb_lake['lake'] / 'mlflow.db'}",
                          registry_uri=f"sqlite:///{nb_lake['lake'] / 'mlflow.db'}")
    run = client.get_run(found["run_id"])  # the run the notebook linked exists in the lake's store
    assert run.info.status == "FINISHED"
    assert run.data.tags["lakerec.stage"] == "train" and run.data.tags["lakerec.database"] == DATABASE
    assert run.data.params["train.epochs"] == "1"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 1
    assert "test/all/model/recall_at_100" in run.data.metrics

    assert {"training_curves.png", "recall_at_k.png"} <= set(found["plots"])
    methods = {(r["segment"], r["method"]) for r in found["evaluation"]}
    assert {("all", "model"), ("all", "most-popular"), ("all", "random")} <= methods
    model_row = next(r for r in found["evaluation"] if (r["segment"], r["method"]) == ("all", "model"))
    assert model_row["recall@100"] == pytest.approx(run.data.metrics["test/all/model/recall_at_100"])

    version = client.get_model_version("lakerec-notebooks", str(found["model_version"]))
    assert version.run_id == found["run_id"]
    assert found["run_id"] in text and "mlflow ui" in text  # the link
    assert found["champion"] in text and version.tags["lakerec.champion_reason"] in found["champion"]  # the gate

    # The ranker: its own run, trained with the notebook's parameters, linked to the two-tower above.
    rank = client.get_run(found["rank_run_id"])
    assert rank.info.status == "FINISHED" and rank.data.tags["lakerec.stage"] == "rank"
    assert rank.data.params["rank.epochs"] == "1" and rank.data.params["rank.batch_size"] == "1024"
    assert rank.data.params["rank.logistic_regression"] == "False"
    assert rank.data.tags["lakerec.retrieval_run_id"] == found["run_id"]
    assert client.get_model_version(RANKER, str(found["rank_version"])).run_id == found["rank_run_id"]
    # Its table: the ranker and the baselines it was given, on the same test rows, as logged.
    by_method = {r["method"]: r for r in found["ranking"]}
    assert {"ranker", "item CTR", "two-tower"} <= set(by_method) and "logistic regression" not in by_method
    assert by_method["ranker"]["rows"] == by_method["item CTR"]["rows"] > 0
    for method, slug in (("ranker", "ranker"), ("item CTR", "item_ctr")):
        assert by_method[method]["CTR AUC"] == pytest.approx(rank.data.metrics[f"rank_test/{slug}/ctr_auc"])
    assert 0 < by_method["ranker"]["CTR AUC"] < 1
    assert found["two_stage"] and "two_stage/retrieval_ranker/recall_at_10" in rank.data.metrics
    # Its curves: one epoch of each loss and validation AUC, as in the run's history.
    (epoch,) = found["rank_curves"]
    assert epoch["epoch"] == 1
    for name in ("loss", "ctr_loss", "ctcvr_loss", "validation/ctr_auc"):
        (logged,) = client.get_metric_history(rank.info.run_id, name)
        assert epoch[name] == pytest.approx(logged.value)
    assert sorted(found["rank_plots"]) == ["ranking_calibration.png", "ranking_roc.png"]
    # The two-tower's plots, the ranker's curves, its ROC and calibration plots.
    assert outputs["image/png"] == len(found["plots"]) + 1 + len(found["rank_plots"])
    assert found["rank_run_id"] in text


def test_03_recommend_shows_a_users_history_and_top_k(nb_lake, trained):
    probe = ('{"user_id": user_id, "run_id": run_id, "history": history.to_dict("records"), '
             '"top": top.to_dict("records")}')
    # One epoch may or may not beat most-popular (the champion gate): name 02's version.
    found, outputs, text = run_notebook("03_recommend", nb_lake, probe, k=str(K),
                                        model_version=str(trained[0]["model_version"]))
    assert found["run_id"] == trained[0]["run_id"]  # that version's run

    history, top = found["history"], found["top"]
    assert history, "the most active user has training clicks"
    assert [r["rank"] for r in top] == list(range(1, K + 1))
    assert len({r["item_id"] for r in top}) == K
    scores = [r["score"] for r in top]
    assert scores == sorted(scores, reverse=True)
    history_items = {r["item_id"] for r in history}
    assert all(r["in_history"] == (r["item_id"] in history_items) for r in top)
    assert all(r["item_impressions"] is not None for r in top)  # every item is in the vocabulary
    assert outputs["text/html"] >= 2
    assert f"User **{found['user_id']}**" in text
