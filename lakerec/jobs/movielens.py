"""Load a downloaded MovieLens ratings file into the lake's training tables.

    python -m lakerec.jobs.movielens --ratings PATH [--conf PATH] [--lake DIR] [--database movielens]
        [--split random|time] [--test-fraction 0.2] [--seed 42]

PATH is `ml-100k/u.data` (tab separated) or `ml-1m/ratings.dat` (`::` separated). The
tables land in their own database, ready for
    python -m lakerec.jobs.train --database movielens --features ids [--protocol tfrs-tutorial]
"""

from __future__ import annotations

from lakerec import cli
from lakerec.spark import get_spark

DEFAULT_DATABASE = "movielens"


def main(argv: list[str] | None = None) -> None:
    from lakerec.movielens import SPLIT_METHODS, load

    p = cli.parser("movielens", "Load MovieLens 100K/1M ratings into vocabulary and interaction tables.")
    p.add_argument("--ratings", required=True, help="u.data (100K) or ratings.dat (1M), as downloaded from GroupLens")
    p.add_argument("--database", default=DEFAULT_DATABASE, help=f"target database (default {DEFAULT_DATABASE})")
    p.add_argument("--split", choices=SPLIT_METHODS, default="random", help="random (default, the TFRS tutorial's) or time")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)
        s = load(get_spark(cfg), cfg, args.ratings, args.split, args.test_fraction, args.seed)
        print(f"{s.ratings:,} ratings -> {s.database}: train {s.train:,}, test {s.test:,} "
              f"({s.cold_test_rows:,} cold-start), {s.users:,} users, {s.items:,} items, split {s.split}")
        print(f"next: python -m lakerec.jobs.train --database {s.database} --features ids [--protocol tfrs-tutorial]")

    cli.run_main("movielens", body)


if __name__ == "__main__":
    main()
