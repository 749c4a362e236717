"""Train the ranking model (pCTR, and pCVR with ESMM) on train_impressions and register it.

    python -m lakerec.jobs.rank [--conf PATH] [--lake DIR] [--database DB] [--objective ctr|esmm]
        [--rank-epochs E] [--rank-batch-size B] [--rank-embedding-dim D] [--rank-learning-rate LR]
        [--cross-layers N] [--position-bias | --no-position-bias] [--cross-dropout F] [--rank-validation-fraction F]
        [--rank-early-stopping-patience N] [--rank-workers N [--rank-gpu]] [--registered-ranker NAME]
        [--model-version N] [--run-name NAME] [--resume] [--no-evaluate]

Reads train_impressions through Petastorm, checkpoints every epoch under
<lake>/checkpoints/rank/<run name>, logs the run to MLflow (params, per-epoch losses and
validation metrics, input tables with their Delta versions, the retrieval model it goes with:
the two-tower's champion or --model-version), trains in the driver or, with --rank-workers N > 1,
on N Spark barrier tasks (lakerec/retrieval/distributed.py), registers the model as
mlflow.registered_ranker (the alias `champion` only if it beats item CTR and the champion on the
validation slice), evaluates it on test_impressions (the table of
lakerec.jobs.evaluate_ranker, unless --no-evaluate) and prints a summary. Any other rank setting: --set rank.KEY=VALUE.
"""

from __future__ import annotations

import argparse

from lakerec import cli
from lakerec.spark import get_spark

OPTIONS = ("mlflow.registered_ranker", "mlflow.model_version", "rank.objective", "rank.epochs", "rank.batch_size",
           "rank.embedding_dim", "rank.learning_rate", "rank.cross_layers", "rank.position_bias", "rank.cross_dropout",
           "rank.validation_fraction", "rank.early_stopping_patience", "rank.workers", "rank.gpu", "train.petastorm_cache")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("rank", "Train the ranking model (DCN-v2, ESMM) on train_impressions, log it to MLflow.", OPTIONS)
    p.add_argument("--run-name", help="name of the run (and of its checkpoint folder)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted ranker run from its last checkpoint")
    p.add_argument("--no-evaluate", action="store_true",
                   help="skip the evaluation on test_impressions (python -m lakerec.jobs.evaluate_ranker runs it later)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def body():
        from lakerec.ranking import train

        cfg = cli.config_from_args(args)
        spark = get_spark(cfg)
        out = train.run(spark, cfg, run_name=args.run_name, resume=args.resume,
                        epochs=args.rank_epochs if args.resume else None, evaluate_after=not args.no_evaluate)
        print(train.summary_text(out))

    cli.run_main("rank", body)


if __name__ == "__main__":
    main()
