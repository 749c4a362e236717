"""Ingest raw Ali-CCP files into Delta tables: `python -m lakerec.jobs.ingest --raw DIR`."""

from __future__ import annotations

from lakerec import cli
from lakerec.ingest import SPLITS, run, summary
from lakerec.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("ingest", "Parse and explode raw Ali-CCP files into Delta tables, quarantining bad lines.", ("raw",))
    p.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits to ingest (default: train,test)")
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)
        spark = get_spark(cfg)
        splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
        reports = run(spark, cfg, cfg.raw, splits)
        print(summary(reports))

    cli.run_main("ingest", body)


if __name__ == "__main__":
    main()
