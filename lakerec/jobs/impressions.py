"""The ranker's tables, every impression of each split: `python -m lakerec.jobs.impressions`.

    python -m lakerec.jobs.impressions                              # after `python -m lakerec.jobs.filter`
    python -m lakerec.jobs.impressions --conf conf/full.yml --set filter.history_length=16

Writes train_impressions and test_impressions (clicked or not, mapped with the filter's
vocabularies) and one impressions_runs row per split. The SQL it runs is in
lakerec/sql/impressions/ and lakerec/sql/map_features.sql (see lakerec.impressions).
"""

from __future__ import annotations

from lakerec import cli
from lakerec.impressions import format_summary, run
from lakerec.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(
        "impressions",
        "Write every impression of each split, clicked or not, mapped with the filter's vocabularies, "
        "as the ranker's Delta tables train_impressions and test_impressions.",
    )
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)  # validated before a Spark session starts
        spark = get_spark(cfg)
        print(format_summary(run(spark, cfg)))

    cli.run_main("impressions", body)


if __name__ == "__main__":
    main()
