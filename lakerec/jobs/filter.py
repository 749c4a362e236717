"""Frequency filtering, vocabularies and training tables: `python -m lakerec.jobs.filter`.

    python -m lakerec.jobs.filter                                  # thresholds from conf/local.yml
    python -m lakerec.jobs.filter --conf conf/full.yml --kcore     # the full dataset, k-core
    python -m lakerec.jobs.filter --min-item-count 501 --min-user-count 51 --label conversion

The SQL it runs is in lakerec/sql/filter/ (see lakerec.filtering).
"""

from __future__ import annotations

from lakerec import cli
from lakerec.filtering import format_summary, run
from lakerec.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(
        "filter",
        "Keep items with >= N train impressions, then users with >= M among them; write the vocabularies "
        "and the train/test interactions as Delta tables.",
        ("filter.min_item_count", "filter.min_user_count", "filter.label", "filter.kcore"),
    )
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)  # validated before a Spark session starts
        spark = get_spark(cfg)
        print(format_summary(run(spark, cfg)))

    cli.run_main("filter", body)


if __name__ == "__main__":
    main()
