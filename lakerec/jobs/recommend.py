"""Write the top-K items of every vocabulary user to the Delta table `recommendations`.

    python -m lakerec.jobs.recommend [--conf PATH] [--lake DIR] [--database DB] [--k 100]
        [--model-version N | --run-id ID] [--exclude-seen | --no-exclude-seen]
        [--ranker-version N | --ranker-uri URI | --no-rerank-recommendations]
        [--candidates N] [--rerank-by p_click|p_ctcvr|expected_clicks] [--registered-recommender NAME]
        [--index exact|hnsw]

Uses the registered two-tower's `champion` (or --model-version, or a training run's model with
--run-id): the query tower on each user's latest context and an exact index over all items.
Where a ranker is champion for the database (python -m lakerec.jobs.rank; or --ranker-version),
the two-tower retrieves
--candidates items per user and the ranker re-orders them (lakerec.ranking.rerank).
Columns: user_id, rank (1 = best), item_id, score, p_click, p_conversion, run_id, ranker.
Then the recommender model that gives the same answers per request (lakerec.serving: both
models and the users' feature snapshot) is logged and registered as --registered-recommender
(default lakerec-recommender; "" logs without registering), for `python -m lakerec.jobs.serve`.
--exclude-seen (default: on for MovieLens tables) never recommends a user an item they had
in train_interactions.
"""

from __future__ import annotations

from lakerec import cli
from lakerec.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("recommend", "Top-K items per user from a trained model, into the recommendations table.",
                   ("mlflow.model_version", "evaluate.exclude_seen", "mlflow.registered_ranker", "mlflow.ranker_version",
                    "rank.rerank_recommendations", "rank.candidates", "rank.rerank_by", "mlflow.registered_recommender",
                    "serve.index"))
    p.add_argument("--k", type=cli.positive_int, default=100, help="items per user (default 100)")
    p.add_argument("--run-id", help="MLflow run id of a training run (default: --model-version, else the champion)")
    p.add_argument("--ranker-uri", help="the ranker's MLflow model URI (default: --ranker-version, else the "
                                        "champion ranker of the database, if any)")
    args = p.parse_args(argv)

    def body():
        from lakerec.retrieval import recommend
        from lakerec.serving import export

        cfg = cli.config_from_args(args)
        out = recommend.run(get_spark(cfg), cfg, args.k, args.run_id, ranker_uri=args.ranker_uri, recommender=True)
        print(f"{out['rows']:,} recommendations for {out['users']:,} users -> {out['table']} "
              f"(version {out['version']}, run {out['run_id']}, "
              f"seen items {'excluded' if out['exclude_seen'] else 'kept'}, "
              f"{'re-ranked by ' + out['ranker'] if out['ranker'] else 'two-tower order'})")
        print(f"the same answers per request: {export.served_uri(out['recommender'])} "
              "(python -m lakerec.jobs.serve)")

    cli.run_main("recommend", body)


if __name__ == "__main__":
    main()
