"""How closely the computed cross fields reproduce the logged ones, on test impressions.

    python bench/cross_fidelity.py [--lake bench/out/rank_quality]

Reads a lake the demo pipeline wrote (bench/rank_quality.py leaves one), learns the maps of
lakerec.ranking.candidate_crosses on train_impressions, recomputes every test impression's
cross fields from its own user history and item, as a retrieved candidate gets them, and
prints per cross field, side by side: the share of rows where the log carries it and where
the computation does, the share of the logged ones reproduced exactly (index and weight; the
intentions as a set of ids), and the share of rows without a logged cross that get one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", default=str(REPO / "bench" / "out" / "rank_quality"))
    args = p.parse_args()

    from pyspark.sql import functions as Fn

    from lakerec.config import load_config
    from lakerec.ranking import candidate_crosses as C
    from lakerec.schema import fields as F
    from lakerec.schema import tables as T
    from lakerec.spark import get_spark
    from lakerec.tables import read_table

    cfg = load_config(REPO / "conf" / "local.yml", {}, lake=args.lake)
    spark = get_spark(cfg)
    keys = C.learn_keys(read_table(spark, cfg.table(T.TRAIN_IMPRESSIONS.name)))
    test = read_table(spark, cfg.table(T.TEST_IMPRESSIONS.name))
    crosses = [F.BY_NAME[name] for name in F.CROSSES]
    logged = [c for f in crosses for c in f.model_columns + ((f.weight_column,) if f.weight_column else ())]
    rows = C.with_computed_crosses(test.select(*[Fn.col(c).alias(f"log_{c}") for c in logged],
                                               *[c for c in test.columns if c not in logged]),
                                   keys, cfg.filter.item_intention_length)
    aggs = [Fn.count(Fn.lit(1)).alias("rows")]
    for f in crosses:
        if f.multi:
            was, now = Fn.col(f"log_{f.ids_column}")[0] > 0, Fn.col(f.ids_column)[0] > 0
            same = Fn.array_sort(Fn.col(f"log_{f.ids_column}")) == Fn.array_sort(Fn.col(f.ids_column))
        else:
            was, now = Fn.col(f"log_{f.index_column}") > 0, Fn.col(f.index_column) > 0
            same = ((Fn.col(f"log_{f.index_column}") == Fn.col(f.index_column))
                    & (Fn.col(f"log_{f.weight_column}") == Fn.col(f.weight_column)))
        aggs += [Fn.avg(was.cast("double")).alias(f"{f.name}:logged"),
                 Fn.avg(now.cast("double")).alias(f"{f.name}:computed"),
                 (Fn.sum((was & now & same).cast("double")) / Fn.sum(was.cast("double"))).alias(f"{f.name}:same"),
                 (Fn.sum((now & ~was).cast("double")) / Fn.sum((~was).cast("double"))).alias(f"{f.name}:extra")]
    row = rows.agg(*aggs).first()
    print(f"Cross fields of {row['rows']:,} test impressions, logged vs computed (lakerec.ranking.candidate_crosses)")
    head = f"{'field':<24}{'logged':>10}{'computed':>10}{'logged reproduced':>20}{'extra where absent':>20}"
    print(head + "\n" + "-" * len(head))
    for f in crosses:
        print(f"{f.name:<24}" + "".join(f"{row[f'{f.name}:{m}'] or 0.0:>{w}.3f}"
                                        for m, w in (("logged", 10), ("computed", 10), ("same", 20), ("extra", 20))))


if __name__ == "__main__":
    main()
