"""The default configuration against the baselines and the oracle, at three sparsity levels.

    python bench/quality.py [--levels sparse,medium,dense] [--set train.item_bias=false ...] [--fresh]

Generates three lakes once into bench/out/quality/<level> (cached: a rerun reuses the raw
files and the filtered tables; --fresh starts again), with the generator's own flags
(--impressions/--users/--items, and for the sparse level --session-min 1 --session-max 3),
so that train holds about 1, 5 and 25 clicks per user (the README's generator section
explains the flags). The sparse level keeps every user (filter.min_user_count 1): at the
demo's threshold of 3 the users with one or two impressions, which make the level sparse,
would be filtered away.
On each it trains conf/local.yml (plus any --set) and prints, per level, recall@100 and
NDCG@10 of the model, of every baseline the evaluation returns (most-popular, random and
any other method it reports, e.g. an ALS baseline) and of the oracle: the generator's
planted truth ranking the same test rows (`Oracle.top_k`, as in bench/oracle_recall.py).
The target: the model at least most-popular's figures at every level.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "quality"

# name -> generator arguments: about 1, 5 and 25 train clicks per user with clicks (click
# rate ~3.9%; a session is 20-60 impressions unless its length is set, README "Generator").
LEVELS = {
    "sparse": dict(impressions=40_000, users=20_000, items=1_000, session_min=1, session_max=3),
    "medium": dict(impressions=40_000, users=450, items=1_000),
    "dense": dict(impressions=60_000, users=100, items=1_000),
    # Not a default level: MovieLens-100k's sizes, the lake conf/movielens.yml was swept on.
    "movielens": dict(impressions=100_000, users=943, items=1_682),
}
# name -> config overrides of that level (on top of --conf and --set).
LEVEL_CONFIG = {"sparse": {"filter.min_user_count": 1}}
DEFAULT_LEVELS = ("sparse", "medium", "dense")
K_RECALL, K_NDCG = 100, 10


def _oracle_ranks():
    spec = importlib.util.spec_from_file_location("oracle_recall", REPO / "bench" / "oracle_recall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.oracle_ranks


def prepare(spark, cfg, level: str) -> Path:
    """Generate, ingest and filter a level's tables once (database quality_<level>); returns its raw folder."""
    from lakerec import filtering, ingest
    from lakerec.aliccp.generator import generate

    from lakerec.aliccp.generator.params import GeneratorParams

    raw, done = OUT / level / "raw", OUT / level / "prepared"
    if not done.is_file():
        shutil.rmtree(raw, ignore_errors=True)
        sizes = dict(LEVELS[level])
        sessions = {k: sizes.pop(k) for k in ("session_min", "session_max") if k in sizes}
        generate(raw, ("train", "test"), seed=42, params=GeneratorParams(**sessions), **sizes)
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
        ingest.run(spark, cfg, str(raw))
        filtering.run(spark, cfg)
        done.write_text("ok\n")
    return raw


def oracle_metrics(spark, cfg, raw: Path) -> dict[str, float]:
    from pyspark.sql import functions as F

    from lakerec.aliccp.oracle import Oracle
    from lakerec.retrieval import metrics as M
    from lakerec.retrieval.data import query_key_column
    from lakerec.schema import tables as T

    test = (spark.table(cfg.table(T.TEST_INTERACTIONS.name))
            .select(query_key_column(), "user_id", "item_id").where(F.col("user_id").isNotNull()).collect())
    keys = np.array([r.query_key for r in test])
    users = np.array([r.user_id for r in test], dtype=np.int64)
    items = np.array([r.item_id for r in test], dtype=np.int64)
    ranks = _oracle_ranks()(Oracle.load(raw), users, items, K_RECALL)
    q, r = M.relevant_pairs(keys, items, ranks)
    return {f"recall@{K_RECALL}": M.recall_at_k(q, r, K_RECALL), f"ndcg@{K_NDCG}": M.ndcg_at_k(q, r, K_NDCG)}


def clicks_per_user(spark, cfg) -> float:
    """Train clicks per user with at least one train click (the generator's own measure)."""
    from lakerec.schema import tables as T

    clicks = spark.table(cfg.table(T.TRAIN_INTERACTIONS.name))
    return clicks.count() / max(clicks.select("user_id").distinct().count(), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default=",".join(DEFAULT_LEVELS), help="comma-separated, of " + ", ".join(LEVELS))
    p.add_argument("--conf", default=str(REPO / "conf" / "local.yml"), help="config file (default conf/local.yml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    p.add_argument("--fresh", action="store_true", help="generate and ingest again")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from lakerec.config import load_config, override, parse_assignment
    from lakerec.retrieval import train
    from lakerec.spark import get_spark

    values = dict(parse_assignment(s) for s in args.set)
    lines = []
    if args.fresh:
        shutil.rmtree(OUT, ignore_errors=True)
    # One lake (one metastore, one MLflow store) with a database per level.
    spark = None
    for level in args.levels.split(","):
        t0 = time.monotonic()
        cfg = override(load_config(args.conf, lake=str(OUT / "lake"), database=f"quality_{level}"),
                       {**LEVEL_CONFIG.get(level, {}), **values})
        spark = spark or get_spark(cfg)
        raw = prepare(spark, cfg, level)
        density = clicks_per_user(spark, cfg)
        out = train.run(spark, cfg, run_name=f"quality-{level}-{time.strftime('%Y%m%d-%H%M%S')}")
        metrics = out["evaluation"]["metrics"]["all"]
        metrics = {m: v for m, v in metrics.items() if m != "random"} | {"random": metrics["random"]}
        metrics["oracle"] = oracle_metrics(spark, cfg, raw)
        fit = out["fit"]
        lines.append((level, density, metrics, fit, time.monotonic() - t0))
        print(out["table"])

    print(f"\nSettings: {args.conf} {' '.join('--set ' + s for s in args.set)}")
    head = f"{'level':<8}{'clicks/user':>12}  {'method':<14}{f'recall@{K_RECALL}':>11}{f'ndcg@{K_NDCG}':>9}" \
           f"{'vs pop':>8}{'vs oracle':>10}"
    print(head + "\n" + "-" * len(head))
    for level, density, metrics, fit, seconds in lines:
        pop, orc = metrics["most-popular"], metrics["oracle"]
        for i, (method, v) in enumerate(metrics.items()):
            r, n = v[f"recall@{K_RECALL}"], v[f"ndcg@{K_NDCG}"]
            lead = f"{level if i == 0 else '':<8}{(f'{density:.1f}' if i == 0 else ''):>12}  "
            vs_pop = f"{r / pop[f'recall@{K_RECALL}']:.2f}" if pop[f"recall@{K_RECALL}"] else "n/a"
            vs_orc = f"{r / orc[f'recall@{K_RECALL}']:.2f}" if orc[f"recall@{K_RECALL}"] else "n/a"
            print(f"{lead}{method:<14}{r:>11.4f}{n:>9.4f}{vs_pop:>8}{vs_orc:>10}")
        model = metrics["model"]
        # Every baseline the evaluation reports (most-popular, and e.g. ALS where it exists).
        verdicts = []
        for method in metrics:
            if method in ("model", "random", "oracle"):
                continue
            ok = all(model[k] >= metrics[method][k] for k in (f"recall@{K_RECALL}", f"ndcg@{K_NDCG}"))
            verdicts.append(f"model >= {method} on both: {'yes' if ok else 'NO'}")
        stop = f", best epoch {fit.best_epoch}" if fit.best_epoch else ""
        print(f"{'':<22}{'; '.join(verdicts)} ({fit.epochs_done} epochs{stop}, {seconds:.0f}s)")


if __name__ == "__main__":
    main()
