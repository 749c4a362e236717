"""Recall@100 of the trained model against the generator's oracle and most-popular.

    python bench/oracle_recall.py [--impressions 200000] [--epochs N]

Generates the demo-sized data (with its planted truth), runs ingest → filter → train →
evaluate on a fresh lake, then ranks the same test rows by the oracle: for each user, the
items by the true probability of being shown and clicked (`Oracle.top_k`). The model's and
most-popular's figures are the evaluation's own (full catalogue, same metric functions).
Prints recall@100 for each and the model/oracle and model/most-popular ratios (targets:
>= 0.8 of the oracle, well above most-popular).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "oracle"


def oracle_ranks(oracle, user_ids: np.ndarray, item_ids: np.ndarray, k: int) -> np.ndarray:
    """Rank of each test row's item in its user's oracle top-k (MISS beyond k or unknown user)."""
    from lakerec.retrieval import metrics as M

    ranks = np.full(len(user_ids), M.MISS, dtype=np.int64)
    known = np.isin(user_ids, oracle.user_ids)
    users = np.unique(user_ids[known])
    top = oracle.top_k(users, k=k, split="test")
    position = {(u, int(i)): r for u, row in zip(users.tolist(), top) for r, i in enumerate(row)}
    for n, (u, i) in enumerate(zip(user_ids.tolist(), item_ids.tolist())):
        ranks[n] = position.get((u, i), M.MISS)
    return ranks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impressions", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args()

    from pyspark.sql import functions as F

    from lakerec import filtering, ingest
    from lakerec.aliccp.generator import generate
    from lakerec.aliccp.oracle import Oracle
    from lakerec.config import load_config, override
    from lakerec.schema import tables as T
    from lakerec.spark import get_spark
    from lakerec.retrieval import metrics as M
    from lakerec.retrieval import train
    from lakerec.retrieval.data import query_key_column

    shutil.rmtree(OUT, ignore_errors=True)
    raw, lake = OUT / "raw", OUT / "lake"
    cfg = override(load_config(REPO / "conf" / "local.yml", lake=str(lake)), train__epochs=args.epochs)
    t0 = time.monotonic()
    generate(raw, ("train", "test"), impressions=args.impressions, seed=42)
    spark = get_spark(cfg)
    ingest.run(spark, cfg, str(raw))
    filtering.run(spark, cfg)
    trained = train.run(spark, cfg)
    k = 100
    metrics = trained["evaluation"]["metrics"]["all"]
    test = (spark.table(cfg.table(T.TEST_INTERACTIONS.name))
            .select(query_key_column(), "user_id", "item_id").where(F.col("user_id").isNotNull()).collect())
    query_keys = np.array([r.query_key for r in test])
    user_ids = np.array([r.user_id for r in test], dtype=np.int64)
    item_ids = np.array([r.item_id for r in test], dtype=np.int64)
    oracle = Oracle.load(raw)
    ranks = oracle_ranks(oracle, user_ids, item_ids, k)
    oracle_recall = M.recall_at_k(query_keys, ranks, k)
    model, pop = metrics["model"][f"recall@{k}"], metrics["most-popular"][f"recall@{k}"]
    print(f"\n{args.impressions:,} impressions per split, {cfg.train.epochs} epochs, "
          f"{len(test):,} test positives with a user, {time.monotonic() - t0:.0f}s")
    print(f"recall@{k}: model {model:.4f}  most-popular {pop:.4f}  oracle {oracle_recall:.4f}")
    print(f"model / oracle {model / oracle_recall:.2f} (target >= 0.8)   model / most-popular {model / pop:.2f}")


if __name__ == "__main__":
    main()
