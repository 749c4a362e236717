"""Run lake jobs one after another in one process (one Spark start), for tests/test_consistency.py.

    python tests/lake_steps.py LAKE STEP [STEP ...]

STEP is `ingest:RAW_DIR`, `filter:MIN_ITEM_COUNT`, `impressions`, `sql:QUERY` or `facts`. Each
step calls the job's real `main()` (its flags, its one-line errors) and then prints
`step <name> exit <status>`; `facts` prints one JSON line of counts that disagree when the
tables come from different runs. The test kills this process at chosen Delta commits.
"""

from __future__ import annotations

import json
import sys

# Small and quiet enough for a 2-core test machine.
COMMON = ["--set", "spark.master=local[2]", "--set", "spark.shuffle_partitions=2", "--set", "spark.driver_memory=2g"]


def facts(lake: str) -> dict:
    from lakerec import cli
    from lakerec.spark import get_spark

    cfg = cli.config_from_args(cli.parser("facts", "").parse_args(["--lake", lake, *COMMON]))
    spark = get_spark(cfg)
    one = lambda q: spark.sql(q.format(db=cfg.database)).first()[0]  # noqa: E731
    return {
        "samples": one("SELECT count(*) FROM {db}.samples"),
        "samples_without_context": one("SELECT count(*) FROM {db}.samples s LEFT ANTI JOIN {db}.user_contexts u "
                                       "ON s.split = u.split AND s.common_feature_index = u.common_feature_index"),
        "items": one("SELECT count(*) FROM {db}.item_vocab"),
        "max_item_index": one("SELECT max(item_index) FROM {db}.train_interactions"),
    }


def main(lake: str, steps: list[str]) -> None:
    from lakerec.jobs import filter as filter_job, impressions, ingest, sql

    for step in steps:
        name, _, arg = step.partition(":")
        job, argv = {
            "ingest": (ingest, ["--raw", arg, "--splits", "train"]),
            "filter": (filter_job, ["--min-item-count", arg or "2", "--min-user-count", "1"]),
            "impressions": (impressions, []),
            "sql": (sql, ["--format", "csv", arg]),
        }.get(name, (None, None))
        if name == "facts":
            print("facts " + json.dumps(facts(lake)), flush=True)
            continue
        try:
            job.main([*argv, "--lake", lake, *COMMON])
            status = 0
        except SystemExit as e:
            status = e.code or 0
        print(f"step {name} exit {status}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
