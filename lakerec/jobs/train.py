"""Train the two-tower retrieval model on the filter's tables, then evaluate it.

    python -m lakerec.jobs.train [--conf PATH] [--lake DIR] [--database DB] [--epochs E]
        [--batch-size B] [--embedding-dim D] [--features ids|all] [--run-name NAME]
        [--resume] [--protocol tfrs-tutorial] [--workers N [--gpu]] [--petastorm-cache URL]
        [--exclude-seen | --no-exclude-seen] [--no-als]

Reads train_interactions through Petastorm, checkpoints every epoch under
<lake>/checkpoints/<run name>, logs the run to MLflow (params, per-epoch loss, the
evaluation table, plots, input tables with their Delta versions, git commit), exports and
registers the model (the alias `champion` only if it beats most-popular and the champion on the
validation slice: lakerec.registry), and prints the model-versus-baselines table. `--workers N` trains on N Spark barrier tasks
(MultiWorkerMirroredStrategy, one Petastorm shard each; `--gpu`: one GPU per task).
"""

from __future__ import annotations

import argparse

from lakerec import cli
from lakerec.errors import ConfigError
from lakerec.spark import get_spark


def build_parser() -> argparse.ArgumentParser:
    from lakerec.retrieval.protocols import PROTOCOLS

    p = cli.parser("train", "Train the two-tower retrieval model (Petastorm -> TFRS), evaluate it, log it to MLflow.",
                   ("train.epochs", "train.batch_size", "train.embedding_dim", "train.learning_rate", "train.features",
                    "train.temperature", "train.item_bias", "train.popularity_prior", "train.validation_fraction",
                    "train.early_stopping_patience", "train.validation_metric", "train.workers", "train.gpu",
                    "train.petastorm_cache", "evaluate.exclude_seen", "evaluate.als"))
    p.add_argument("--run-name", help="name of the run (and of its checkpoint folder)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="a named setup: tfrs-tutorial = ids, dim 32, Adagrad 0.1, batch 8192, 3 epochs")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation at the end")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def body():
        from lakerec.retrieval import train
        from lakerec.retrieval.protocols import apply_protocol

        # The protocol's settings first, then the flags and --set on top of them.
        cfg = cli.config_from_args(args, preset=lambda base: apply_protocol(base, args.protocol))
        if args.resume and args.protocol:
            raise ConfigError("--resume continues a run with its own settings: drop --protocol")
        spark = get_spark(cfg)
        out = train.run(spark, cfg, run_name=args.run_name, resume=args.resume,
                        epochs=args.epochs if args.resume else None, protocol=args.protocol,
                        evaluate_after=not args.no_evaluate)
        if out["table"]:
            print(out["table"])
        print(f"run {out['run_name']} ({out['run_id']}): model version {out['model_version']}"
              + (f", {out['champion']}" if out["champion"] else ""))

    cli.run_main("train", body)


if __name__ == "__main__":
    main()
