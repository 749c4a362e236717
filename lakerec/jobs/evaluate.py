"""Evaluate a training run's model on test_interactions against ALS, most-popular and random.

    python -m lakerec.jobs.evaluate [--conf PATH] [--lake DIR] [--database DB] [--model-version N | --run-id ID]
        [--exclude-seen | --no-exclude-seen] [--no-als]

The model is the `champion` of mlflow.registered_model unless --model-version or --run-id picks
another. Full-catalogue retrieval (exact, every vocabulary item), recall@K and NDCG@K and TFRS's
top-K categorical accuracy for K in `train.ks`, cold-start rows on their own line. With
--exclude-seen (default: on for MovieLens tables) each user's training items are left out
of their ranking. The table is printed and logged into the run (metrics, evaluation/, plots/).
"""

from __future__ import annotations

from lakerec import cli
from lakerec.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("evaluate", "Evaluate a trained model against the ALS, most-popular and random baselines.",
                   ("mlflow.model_version", "evaluate.exclude_seen", "evaluate.als"))
    p.add_argument("--run-id", help="MLflow run id of a training run (default: --model-version, else the champion)")
    p.add_argument("--no-log", action="store_true", help="print only; do not log into the run")
    args = p.parse_args(argv)

    def body():
        from lakerec.retrieval import evaluate

        cfg = cli.config_from_args(args)
        _, table = evaluate.run(get_spark(cfg), cfg, args.run_id, log_to_mlflow=not args.no_log)
        print(table)

    cli.run_main("evaluate", body)


if __name__ == "__main__":
    main()
