"""Generate synthetic Ali-CCP raw files with a planted truth (no Spark needed).

    python -m lakerec.jobs.generate --out data/raw
    python -m lakerec.jobs.generate --out /tmp/raw --split train --impressions 1000000 --malformed 50
    python -m lakerec.jobs.generate --out data/raw --conversion-rate 0.1   # CVR measurable at demo size

Writes `sample_skeleton_{split}.csv` and `common_features_{split}.csv` per split in the
published byte format, and `oracle/` (the latent truth, the true click and conversion
probability of every impression, and the expected quarantine counts).
"""

from __future__ import annotations

import argparse

from lakerec import cli
from lakerec.aliccp import generator as gen

SPLIT_CHOICES = {"train": ("train",), "test": ("test",), "both": ("train", "test")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lakerec.jobs.generate", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the raw files and oracle/ (created if missing)")
    p.add_argument("--split", choices=sorted(SPLIT_CHOICES), default="both", help="which split(s) to write")
    p.add_argument("--impressions", type=int, default=gen.DEFAULT_IMPRESSIONS, help="skeleton rows per split")
    p.add_argument("--users", type=int, default=gen.DEFAULT_USERS, help="users in the universe (5%% test only)")
    p.add_argument("--items", type=int, default=gen.DEFAULT_ITEMS, help="items in the universe (5%% test only)")
    p.add_argument("--topics", type=int, default=gen.GeneratorParams.topics, help="latent interest topics")
    p.add_argument("--seed", type=int, default=gen.DEFAULT_SEED, help="same seed, same bytes")
    p.add_argument("--conversion-rate", type=float, default=gen.GeneratorParams.conversion_rate_of_clicks,
                   help="share of clicks that convert (default %(default)s, the published rate)")
    p.add_argument("--session-min", type=int, default=gen.GeneratorParams.session_min,
                   help="fewest impressions in a session (one user, one common line)")
    p.add_argument("--session-max", type=int, default=gen.GeneratorParams.session_max,
                   help="most impressions in a session; short sessions spread clicks over more users")
    p.add_argument("--malformed", type=int, default=0, help="malformed lines to plant per split (for ingest tests)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def body():
        summary = gen.generate(
            args.out, SPLIT_CHOICES[args.split], impressions=args.impressions, users=args.users, items=args.items,
            seed=args.seed, malformed=args.malformed, params=gen.GeneratorParams(
                topics=args.topics, session_min=args.session_min, session_max=args.session_max),
            conversion_rate=args.conversion_rate,
        )
        print(gen.format_summary(summary), flush=True)

    cli.run_main("generate", body)


if __name__ == "__main__":
    main()
