"""The whole pipeline on the embedded default: `python -m lakerec.jobs.demo [--lake DIR]`.

generate → ingest → example SQL → filter → train (+ evaluate) → recommend, in one process
and one Spark session, ending with the model-versus-baselines table. `make demo` runs it.
"""

from __future__ import annotations

import logging
import time

from lakerec import cli
from lakerec.config import Config, override
from lakerec.spark import get_spark
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.demo")

# Example questions shown after ingest (titles of statements in lakerec/sql/examples.sql).
EXAMPLE_QUERIES = 3


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def run(cfg: Config, impressions: int, users: int, items: int, seed: int) -> dict:
    """Run every stage on cfg's lake; return the stages' outputs."""
    from lakerec.jobs.sql import format_rows
    from lakerec import filtering, ingest
    from lakerec.aliccp.generator import format_summary, generate
    from lakerec.sqlfiles import run_statements, sql_file
    from lakerec.retrieval import recommend, train

    timings: dict[str, float] = {}
    raw = cfg.lake_path / "raw"
    cfg = override(cfg, raw=str(raw))

    t0 = time.monotonic()
    banner(f"1/6 generate {impressions:,} impressions per split into {raw}")
    print(format_summary(generate(raw, ("train", "test"), impressions=impressions, users=users, items=items, seed=seed)))
    timings["generate"] = time.monotonic() - t0

    t0 = time.monotonic()
    spark = get_spark(cfg)
    banner("2/6 ingest into Delta")
    print(ingest.summary(ingest.run(spark, cfg, str(raw))))
    timings["ingest"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner("3/6 example SQL (lakerec/sql/examples.sql)")
    for i, (st, df) in enumerate(run_statements(spark, sql_file("examples.sql"), cfg)):
        if i >= EXAMPLE_QUERIES:
            break
        print(f"-- {st.title}\n{format_rows(df, 'table', 20)}")
    timings["sql"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner("4/6 frequency filter and vocabularies")
    print(filtering.format_summary(filtering.run(spark, cfg)))
    timings["filter"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner(f"5/6 train the two-tower model ({cfg.train.epochs} epochs, features={cfg.train.features}) and evaluate")
    trained = train.run(spark, cfg)
    timings["train"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner("6/6 batch recommendations")
    recs = recommend.run(spark, cfg, k=100, run_id=trained["run_id"])
    print(f"{recs['rows']:,} rows for {recs['users']:,} users in {recs['table']} (version {recs['version']})")
    timings["recommend"] = time.monotonic() - t0

    banner("model versus baselines on the test split")
    print(trained["table"])
    print("\nseconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"MLflow run {trained['run_id']}: mlflow ui --backend-store-uri {cfg.tracking_uri}")
    print(f"query the lake: python -m lakerec.jobs.sql --lake {cfg.lake} \"SELECT * FROM {cfg.table(T.RECOMMENDATIONS.name)} LIMIT 5\"")
    return {"trained": trained, "recommended": recs, "timings": timings}


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("demo", "Run the whole pipeline on generated data: generate, ingest, filter, train, evaluate, recommend.",
                   ("train.epochs",))
    p.add_argument("--impressions", type=int, default=200_000, help="impressions per split (default 200,000)")
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)
        run(cfg, args.impressions, args.users, args.items, args.seed)

    cli.run_main("demo", body)


if __name__ == "__main__":
    main()
