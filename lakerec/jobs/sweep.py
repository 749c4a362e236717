"""Search training settings on the validation slice; write the best as a config file.

    python -m lakerec.jobs.sweep [--conf PATH] [--sweep FILE] [--max-trials N] [--out PATH] [--set KEY=VALUE]

Runs `sweep.max_trials` trials of the `sweep:` section (or of --sweep FILE: a YAML mapping
with `space`, and optionally `method`, `metric`, `max_trials`, `seed`, `out`, either at the
top or under `sweep:`), each an MLflow child run of one parent run, scored on the
validation slice carved from train (never on test). Prints the best settings and writes
them as a complete config file (a copy of --conf with the best `train.*` keys):

    python -m lakerec.jobs.train --conf <the overlay it printed>
"""

from __future__ import annotations

import yaml

from lakerec import cli
from lakerec.errors import ConfigError
from lakerec.spark import get_spark


def build_parser():
    p = cli.parser("sweep", "Grid or random search over training settings, scored on the validation slice.",
                   ("train.epochs", "train.batch_size", "train.features", "train.validation_fraction",
                    "train.validation_metric", "sweep.max_trials", "sweep.out"))
    p.add_argument("--sweep", metavar="FILE",
                   help="YAML with the search (space, method, metric, max_trials, seed, out)")
    p.add_argument("--run-name", help="name of the parent run (default sweep-<UTC time>)")
    return p


def sweep_values(path: str) -> dict:
    """`sweep.*` keys from a sweep file (its mapping at the top or under `sweep:`)."""
    try:
        data = yaml.safe_load(open(path)) or {}
    except OSError as e:
        raise ConfigError(f"--sweep {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--sweep {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--sweep {path}: expected a mapping with `space`")
    data = data.get("sweep", data)
    return {f"sweep.{k}": v for k, v in data.items()}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def body():
        from lakerec.config import load_config
        from lakerec.retrieval import sweep

        values = sweep_values(args.sweep) if args.sweep else {}
        values.update(cli.given_values(args))  # flags and --set win over the file
        cfg = load_config(args.conf, values)
        spark = get_spark(cfg)
        out = sweep.run(spark, cfg, base_conf=args.conf, run_name=args.run_name)
        width = max(len(str(t["settings"])) for t in out["trials"])
        for t in out["trials"]:
            print(f"{str(t['settings']):<{width}}  {t['score']:.4f}  (best epoch {t['best_epoch']})")
        print(f"\nbest: {out['best']}  score {out['score']:.4f}\nwritten to {out['overlay']}:\n")
        print(out["text"])

    cli.run_main("sweep", body)


if __name__ == "__main__":
    main()
