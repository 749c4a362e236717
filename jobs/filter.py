"""Frequency filtering, vocabularies and training tables: `python -m jobs.filter`.

    python -m jobs.filter                                  # thresholds from conf/local.yml
    python -m jobs.filter --conf conf/full.yml --kcore     # the full dataset, k-core
    python -m jobs.filter --min-item-count 501 --min-user-count 51 --label conversion

The SQL it runs is in lakerec/sql/filter/ (see lakerec.filtering).
"""

from __future__ import annotations

import argparse

from lakerec import cli
from lakerec.filtering import LABELS, format_summary, run, validate
from lakerec.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(
        "filter",
        "Keep items with >= N train impressions, then users with >= M among them; write the vocabularies "
        "and the train/test interactions as Delta tables.",
    )
    p.add_argument("--min-item-count", type=int, metavar="N", help="keep items with at least N train impressions")
    p.add_argument("--min-user-count", type=int, metavar="M",
                   help="then keep users with at least M impressions among the kept items")
    p.add_argument("--label", choices=LABELS, help="which label makes a positive (default: the config's)")
    p.add_argument("--kcore", action=argparse.BooleanOptionalAction, default=None,
                   help="repeat both filters until nothing changes (default: the config's filter.kcore)")
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(
            args,
            filter__min_item_count=args.min_item_count,
            filter__min_user_count=args.min_user_count,
            filter__label=args.label,
            filter__kcore=args.kcore,
        )
        validate(cfg.filter)  # before a Spark session starts
        spark = get_spark(cfg)
        print(format_summary(run(spark, cfg)))

    cli.run_main("filter", body)


if __name__ == "__main__":
    main()
