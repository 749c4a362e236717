"""The whole pipeline on the embedded default: `python -m lakerec.jobs.demo [--lake DIR]`.

generate → ingest → example SQL → filter → train (+ evaluate) → impressions → rank
(+ evaluate, two stages) → recommend (+ the recommender model that serves the same answers:
`make serve`), in one process and one Spark session, ending with the
two tables: retrieval versus its baselines, and ranking versus its baselines. `make demo`
runs it. The demo's data converts 10% of clicks (`--conversion-rate`; the published rate,
0.55%, leaves ~45 conversions in a demo split, too few for a CVR AUC that means anything).
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


DEMO_CONVERSION_RATE = 0.1


def run(cfg: Config, impressions: int, users: int, items: int, seed: int,
        conversion_rate: float = DEMO_CONVERSION_RATE) -> dict:
    """Run every stage on cfg's lake; return the stages' outputs."""
    from lakerec.jobs.sql import format_rows
    from lakerec import filtering, impressions as impressions_stage, ingest
    from lakerec.aliccp.generator import format_summary, generate
    from lakerec.ranking import train as rank_train
    from lakerec.sqlfiles import run_statements, sql_file
    from lakerec.retrieval import recommend, train
    from lakerec.serving.export import served_uri

    timings: dict[str, float] = {}
    raw = cfg.lake_path / "raw"
    cfg = override(cfg, raw=str(raw))

    t0 = time.monotonic()
    banner(f"1/8 generate {impressions:,} impressions per split into {raw}")
    print(format_summary(generate(raw, ("train", "test"), impressions=impressions, users=users, items=items, seed=seed,
                                  conversion_rate=conversion_rate)))
    timings["generate"] = time.monotonic() - t0

    t0 = time.monotonic()
    spark = get_spark(cfg)
    banner("2/8 ingest into Delta")
    print(ingest.summary(ingest.run(spark, cfg, str(raw))))
    timings["ingest"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner("3/8 example SQL (lakerec/sql/examples.sql)")
    for i, (st, df) in enumerate(run_statements(spark, sql_file("examples.sql"), cfg)):
        if i >= EXAMPLE_QUERIES:
            break
        print(f"-- {st.title}\n{format_rows(df, 'table', 20)}")
    timings["sql"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner("4/8 frequency filter and vocabularies")
    print(filtering.format_summary(filtering.run(spark, cfg)))
    timings["filter"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner(f"5/8 train the two-tower model ({cfg.train.epochs} epochs, features={cfg.train.features}) and evaluate")
    trained = train.run(spark, cfg)
    if trained["champion"] is not None:
        print(f"two-tower model version {trained['model_version']}, {trained['champion']}")
    timings["train"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner("6/8 every impression of both splits, for the ranker")
    print(impressions_stage.format_summary(impressions_stage.run(spark, cfg)))
    timings["impressions"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner(f"7/8 train the ranker ({cfg.rank.objective}) and evaluate it, alone and re-ranking the two-tower")
    ranked = rank_train.run(spark, cfg)
    print(rank_train.summary_text({**ranked, "evaluation": None}))
    timings["rank"] = time.monotonic() - t0

    t0 = time.monotonic()
    banner("8/8 batch recommendations")
    # The champions (this run's model if it passed the gate), so the recommender becomes the
    # service's champion too; a model the gate kept out is still the one recommended here.
    promoted = trained["champion"] is not None and trained["champion"].promoted
    recs = recommend.run(spark, cfg, k=100, run_id=None if promoted else trained["run_id"], recommender=True)
    print(f"{recs['rows']:,} rows for {recs['users']:,} users in {recs['table']} (version {recs['version']})")
    print(f"the same answers per request: {served_uri(recs['recommender'])} "
          f"(python -m lakerec.jobs.serve --lake {cfg.lake})")
    timings["recommend"] = time.monotonic() - t0

    banner("retrieval: the two-tower versus baselines on the test split")
    print(trained["table"])
    banner("ranking: the ranker versus baselines on every test impression")
    print(ranked["evaluation"]["table"])
    print("\nseconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"MLflow run {trained['run_id']}: mlflow ui --backend-store-uri {cfg.tracking_uri}")
    print(f"query the lake: python -m lakerec.jobs.sql --lake {cfg.lake} \"SELECT * FROM {cfg.table(T.RECOMMENDATIONS.name)} LIMIT 5\"")
    return {"trained": trained, "ranked": ranked, "recommended": recs, "timings": timings}


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("demo", "Run the whole pipeline on generated data: generate, ingest, filter, train, evaluate, recommend.",
                   ("train.epochs",), lake="creates")
    p.add_argument("--impressions", type=int, default=200_000, help="impressions per split (default 200,000)")
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--conversion-rate", type=float, default=DEMO_CONVERSION_RATE,
                   help=f"share of clicks that convert (default {DEMO_CONVERSION_RATE}; the published rate is 0.0055)")
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)
        run(cfg, args.impressions, args.users, args.items, args.seed, args.conversion_rate)

    cli.run_main("demo", body)


if __name__ == "__main__":
    main()
