"""Load a downloaded MovieLens ratings file into the lake's training tables.

    python -m lakerec.jobs.movielens --ratings PATH [--conf PATH] [--lake DIR] [--database movielens]
        [--split random|time] [--test-fraction 0.2] [--seed 42]

PATH is `ml-100k/u.data` (tab separated) or `ml-1m/ratings.dat` (`::` separated). The
user and movie files beside it (`u.user`/`u.item`, `users.dat`/`movies.dat`) are read too
when they are there: age, gender, occupation, zip area, genres and release year become side
features (lakerec.movielens says which column holds which). The tables land in their own
database, ready for
    python -m lakerec.jobs.train --database movielens --features all   # with side files
    python -m lakerec.jobs.train --database movielens --features ids [--protocol tfrs-tutorial]
"""

from __future__ import annotations

from lakerec import cli
from lakerec.spark import get_spark

DEFAULT_DATABASE = "movielens"


def main(argv: list[str] | None = None) -> None:
    from lakerec.movielens import SPLIT_METHODS, load

    p = cli.parser("movielens", "Load MovieLens 100K/1M ratings into vocabulary and interaction tables.",
                   lake="creates")
    p.add_argument("--ratings", required=True,
                   help="u.data (100K) or ratings.dat (1M), as downloaded from GroupLens; "
                        "u.user/u.item or users.dat/movies.dat beside it add side features")
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
        if s.side_files:
            print(f"side features from {', '.join(s.side_files)} ({s.users_without_features:,} rated users and "
                  f"{s.items_without_features:,} rated movies not in them have 0s)")
        hint = "--features all (or --protocol tfrs-tutorial: ids only)" if s.side_files else \
            "--features ids [--protocol tfrs-tutorial]"
        print(f"next: python -m lakerec.jobs.train --database {s.database} {hint}")

    cli.run_main("movielens", body)


if __name__ == "__main__":
    main()
