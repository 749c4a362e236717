"""Evaluate a ranker on test_impressions against item CTR, logistic regression, two-tower and the oracle.

    python -m lakerec.jobs.evaluate_ranker [--conf PATH] [--lake DIR] [--database DB]
        [--raw DIR] [--ranker-version N | --model-uri URI] [--model-version N] [--run-id ID] [--candidates N] [--rerank-by p_click|p_ctcvr]
        [--no-logistic-regression] [--no-two-stage] [--no-log]

Prints the ranking table (CTR AUC, GAUC, log loss, calibration, CVR AUC, CTCVR AUC per
method) and the two-stage table (recall@10 and NDCG@10 of retrieval alone, + ranker,
+ oracle), and logs both into the MLflow run (lakerec.ranking.evaluate). The ranker and the
two-tower (its baseline and the two-stage run) are each model's `champion` unless
--ranker-version / --model-version (or --model-uri) picks another.
"""

from __future__ import annotations

from lakerec import cli
from lakerec.spark import get_spark


def main(argv: list[str] | None = None, *, loader=None) -> None:
    """The CLI; `loader` (model URI -> Ranker) defaults to lakerec.ranking.scoring.load_ranker."""
    p = cli.parser("evaluate_ranker", "Evaluate a ranker against its baselines, and the two-stage run.",
                   ("raw", "mlflow.registered_ranker", "mlflow.ranker_version", "mlflow.model_version", "rank.candidates", "rank.rerank_by", "rank.logistic_regression",
                    "rank.two_stage"))
    p.add_argument("--model-uri", help="the ranker's MLflow model URI (default: --ranker-version, else the champion "
                                       "of mlflow.registered_ranker)")
    p.add_argument("--run-id", help="MLflow run to log into (default: the run that logged the model)")
    p.add_argument("--no-log", action="store_true", help="print only; do not log into MLflow")
    args = p.parse_args(argv)

    def body():
        from lakerec.ranking import evaluate

        cfg = cli.config_from_args(args)
        result = evaluate.run(get_spark(cfg), cfg, args.model_uri, args.run_id, loader=loader,
                              log_to_mlflow=not args.no_log)
        print(result["table"])

    cli.run_main("evaluate_ranker", body)


if __name__ == "__main__":
    main()
