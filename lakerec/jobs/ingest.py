"""Ingest raw Ali-CCP files into Delta tables: `python -m lakerec.jobs.ingest --raw DIR`."""

from __future__ import annotations

from lakerec import cli
from lakerec.errors import InputDataError
from lakerec.ingest import SPLITS, is_local, local_raw_files, run, summary
from lakerec.spark import check_lake, get_spark


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("ingest", "Parse and explode raw Ali-CCP files into Delta tables, quarantining bad lines.",
                   ("raw", "ingest.force"), lake="creates")
    p.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits to ingest (default: train,test)")
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)
        splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
        if cfg.spark.master is not None:
            check_lake(cfg)
        if not cfg.raw:
            raise InputDataError("no raw data location: pass --raw DIR (or set `raw:` in the config)")
        if is_local(cfg.raw):
            local_raw_files(cfg.raw, splits)  # a missing or compressed file is reported before Spark starts
        spark = get_spark(cfg)
        reports = run(spark, cfg, cfg.raw, splits)
        print(summary(reports))

    cli.run_main("ingest", body)


if __name__ == "__main__":
    main()
