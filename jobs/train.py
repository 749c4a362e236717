"""Train the two-tower retrieval model on the filter's tables, then evaluate it.

    python -m jobs.train [--conf PATH] [--lake DIR] [--database DB] [--epochs E]
        [--batch-size B] [--embedding-dim D] [--features ids|all] [--run-name NAME]
        [--resume] [--protocol tfrs-tutorial] [--workers N [--gpu]] [--petastorm-cache URL]

Reads train_interactions through Petastorm, checkpoints every epoch under
<lake>/checkpoints/<run name>, logs the run to MLflow (params, per-epoch loss, the
evaluation table, plots, table versions, git commit), exports and registers the model,
and prints the model-versus-baselines table. `--workers N` trains on N Spark barrier tasks
(MultiWorkerMirroredStrategy, one Petastorm shard each; `--gpu`: one GPU per task).
"""

from __future__ import annotations

import argparse

from lakerec import cli
from lakerec.errors import ConfigError
from lakerec.spark import get_spark

FEATURES = ("ids", "all")


def build_parser() -> argparse.ArgumentParser:
    from lakerec.retrieval.protocols import PROTOCOLS

    p = cli.parser("train", "Train the two-tower retrieval model (Petastorm -> TFRS), evaluate it, log it to MLflow.")
    p.add_argument("--epochs", type=cli.positive_int)
    p.add_argument("--batch-size", type=cli.positive_int)
    p.add_argument("--embedding-dim", type=cli.positive_int)
    p.add_argument("--features", choices=FEATURES, help="ids: id embeddings only; all: plus user and item features")
    p.add_argument("--run-name", help="name of the run (and of its checkpoint folder)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="a named setup: tfrs-tutorial = ids, dim 32, Adagrad 0.1, batch 8192, 3 epochs")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--workers", type=cli.positive_int,
                   help="training processes: 1 = in the driver (default); N > 1 = N Spark barrier tasks, "
                        "each reading one shard, batch size / N rows per worker step")
    p.add_argument("--gpu", action="store_true", default=None,
                   help="with --workers N: one GPU per worker (needs Spark GPU scheduling, "
                        "spark.task.resource.gpu.amount=1)")
    p.add_argument("--petastorm-cache", metavar="URL",
                   help="where Petastorm materialises the training rows (train.petastorm_cache); with workers on "
                        "several machines, storage they all read, e.g. file:///dbfs/tmp/lakerec/petastorm_cache")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def body():
        from lakerec.config import override
        from lakerec.retrieval import train
        from lakerec.retrieval.protocols import apply_protocol

        cfg = cli.config_from_args(args)
        cfg = apply_protocol(cfg, args.protocol)
        cfg = override(cfg, train__epochs=args.epochs, train__batch_size=args.batch_size,
                       train__embedding_dim=args.embedding_dim, train__features=args.features,
                       train__workers=args.workers, train__gpu=args.gpu, train__petastorm_cache=args.petastorm_cache)
        if args.resume and args.protocol:
            raise ConfigError("--resume continues a run with its own settings: drop --protocol")
        spark = get_spark(cfg)
        out = train.run(spark, cfg, run_name=args.run_name, resume=args.resume,
                        epochs=args.epochs if args.resume else None, protocol=args.protocol,
                        evaluate_after=not args.no_evaluate)
        if out["table"]:
            print(out["table"])
        print(f"run {out['run_name']} ({out['run_id']}): model version {out['model_version']}")

    cli.run_main("train", body)


if __name__ == "__main__":
    main()
