"""Shared command-line plumbing: common flags, logging, and one-line errors.

Every job's `main()` is `run_main(build_parser(), handler)`: the flags `--conf` and
`--lake` are common to all jobs, and a LakeRecError (or a Spark AnalysisException a user
caused, such as a missing table) ends in one clear line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from typing import Any, Callable

from lakerec.config import Config, load_config
from lakerec.errors import LakeRecError


def setup_logging(stage: str) -> logging.Logger:
    logging.basicConfig(
        level=os.environ.get("LAKEREC_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "azure", "urllib3", "alembic", "mlflow.store", "matplotlib", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"lakerec.{stage}")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every job shares (--conf, --lake)."""
    # "resolve": a job may redefine a shared flag (e.g. --database with its own default).
    p = argparse.ArgumentParser(prog=f"python -m jobs.{prog}", description=description, conflict_handler="resolve")
    p.add_argument("--conf", default=None, help="target config YAML (default: conf/local.yml)")
    p.add_argument("--lake", default=None, help="lake root: tables, metastore, MLflow store (overrides the config)")
    p.add_argument("--database", default=None,
                   help="database (schema) of the tables, e.g. aliccp or, on Unity Catalog, catalog.schema (overrides the config)")
    p.add_argument("--experiment", default=None, help="MLflow experiment (overrides the config)")
    p.add_argument("--registered-model", default=None,
                   help="model registry name, e.g. on Unity Catalog catalog.schema.model (overrides the config)")
    return p


def config_from_args(args: argparse.Namespace, **overrides: Any) -> Config:
    overrides.setdefault("database", getattr(args, "database", None))
    overrides.setdefault("mlflow__experiment", getattr(args, "experiment", None))
    overrides.setdefault("mlflow__registered_model", getattr(args, "registered_model", None))
    return load_config(args.conf, lake=args.lake, **overrides)


def _analysis_message(e: Exception) -> str | None:
    text = str(e)
    m = re.search(r"\[TABLE_OR_VIEW_NOT_FOUND\][^`]*`?([\w.`]+)`? cannot be found", text)
    if m:
        return f"table {m.group(1).replace('`', '')} does not exist: run the job that writes it first (see README)"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return first


def run_main(stage: str, fn: Callable[[], Any]) -> None:
    """Run a job's body; user errors end in one clear message and exit status 2."""
    log = setup_logging(stage)
    start = time.monotonic()
    try:
        fn()
    except LakeRecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # Spark's AnalysisException and friends: no JVM trace for user errors
        from pyspark.errors import AnalysisException, ParseException

        if isinstance(e, (AnalysisException, ParseException)):
            print(f"error: {_analysis_message(e)}", file=sys.stderr)
            sys.exit(2)
        raise
    log.info("%s finished in %.1fs", stage, time.monotonic() - start)
