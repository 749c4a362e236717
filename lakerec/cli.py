"""Shared command-line plumbing: common flags, logging, and one-line errors.

Every job's `main()` parses its flags with `parser(...)` (the common flags, the job's config
options from lakerec.options, and `--set KEY=VALUE`), builds its config with
`config_from_args`, and runs its body with `run_main`: a LakeRecError (or a Spark AnalysisException a user
caused, such as a missing table) ends in one clear line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from typing import Any, Callable, Literal, get_args, get_origin

import lakerec
from lakerec.config import Config, check_value, field_type, load_config, override, parse_assignment
from lakerec.errors import ConfigError, LakeRecError
from lakerec.options import BY_KEY, COMMON, OPTIONS


def setup_logging(stage: str) -> logging.Logger:
    logging.basicConfig(
        level=os.environ.get("LAKEREC_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "azure", "urllib3", "alembic", "mlflow.store", "matplotlib", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not lakerec.VERBOSE:  # TensorFlow's Python-side notices (retracing, deprecated arguments)
        for noisy in ("tensorflow", "absl", "h5py"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
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


LakeUse = Literal["reads", "creates", "none"]


def parser(prog: str, description: str, options: tuple[str, ...] = (),
           lake: LakeUse = "reads") -> argparse.ArgumentParser:
    """An argument parser with the flags every job shares and the job's own config options.

    Args:
        prog: the job's name (`train`).
        description: one line for --help.
        options: config keys (lakerec.options) the job takes as flags, beside the common ones
            (--conf, --lake, --database, --experiment, --registered-model, --set, --verbose).
        lake: "reads": `config_from_args` refuses a local lake that is not there (a mistyped
            --lake), before Spark starts; "creates" (ingest, movielens, demo): a missing lake
            is created; "none": the job does not use the lake (upload, download).
    """
    # "resolve": a job may redefine a shared flag (e.g. --database with its own default).
    p = argparse.ArgumentParser(prog=f"python -m lakerec.jobs.{prog}", description=description,
                                conflict_handler="resolve")
    p.add_argument("--conf", default=None, help="target config YAML (default: conf/local.yml)")
    # Read by lakerec/__init__.py from sys.argv (it must act before TensorFlow is imported).
    p.add_argument("--verbose", action="store_true",
                   help="show library warnings: TensorFlow's native log, Python warnings, the JVM's catalog notices")
    add_options(p, COMMON + tuple(options))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                   help="set any config key, e.g. --set train.temperature=0.5 (repeatable; the value is YAML)")
    p.set_defaults(lake_use=lake)
    return p


def add_options(p: argparse.ArgumentParser, keys) -> None:
    """Add the flag of each config key, typed from the config (None when not given)."""
    for key in keys:
        option = BY_KEY[key]
        hint = field_type(key)
        kwargs: dict[str, Any] = {"dest": option.name, "default": None, "help": option.help}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = option.metavar
            if get_origin(hint) is Literal:
                kwargs["choices"], kwargs["metavar"] = get_args(hint), None
            elif hint in (int, float):
                kwargs["type"] = _checked(key, hint)
        p.add_argument(option.flag, **kwargs)


def _checked(key: str, hint: type) -> Callable[[str], Any]:
    """An argparse type: the text as `hint`, checked against the key's config rule."""

    def parse(text: str) -> Any:
        try:
            return check_value(key, hint(text))
        except ValueError:
            kind = "a whole number" if hint is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = hint.__name__  # argparse names the type in its messages
    return parse


def given_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys a person set on the command line: option flags, then every --set."""
    given = {o.key: getattr(args, o.name) for o in OPTIONS if getattr(args, o.name, None) is not None}
    for text in getattr(args, "assignments", None) or ():
        key, value = parse_assignment(text)
        given[key] = value
    return given


def config_from_args(args: argparse.Namespace, preset: Callable[[Config], Config] | None = None) -> Config:
    """The config file of --conf with the command line's values on top (validated).

    Args:
        args: the parsed flags.
        preset: applied to the file's config before the command line (a training protocol),
            so flags and --set still win over it.
    """
    if preset is None:
        cfg = load_config(args.conf, given_values(args))
    else:
        cfg = override(preset(load_config(args.conf)), given_values(args))
    if getattr(args, "lake_use", "none") == "reads" and not _session_running():
        from lakerec.spark import require_lake

        require_lake(cfg)
    return cfg


def _session_running() -> bool:
    """A Spark session is already up in this process (a wrapper or a test opened it): its lake is in use."""
    sql = sys.modules.get("pyspark.sql")  # not imported: no session
    return sql is not None and sql.SparkSession.getActiveSession() is not None


def _analysis_message(e: Exception) -> str | None:
    return analysis_message(str(e)) if str(e).strip() else type(e).__name__


def analysis_message(text: str) -> str:
    """One line for a Spark SQL error's text (a missing table says which job writes it)."""
    m = re.search(r"\[TABLE_OR_VIEW_NOT_FOUND\][^`]*`?([\w.`]+)`? cannot be found", text)
    if m:
        return f"table {m.group(1).replace('`', '')} does not exist: run the job that writes it first (see README)"
    return text.strip().splitlines()[0] if text.strip() else "Spark SQL failed without a message"


# MLflow's codes for what a person asked for wrongly (an unknown run id, model or version), not a failure.
_MLFLOW_USER_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS")


def _mlflow_message(e: Exception) -> str | None:
    """One line for an MLflow error a person caused (e.g. `--run-id deadbeef`); None for anything else."""
    exceptions = sys.modules.get("mlflow.exceptions")  # not imported: it cannot be MLflow's
    if exceptions is None or not isinstance(e, exceptions.MlflowException) or e.error_code not in _MLFLOW_USER_ERRORS:
        return None
    first = (e.message or str(e)).strip().splitlines()[0]
    return f"MLflow: {first}"


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
        message = _mlflow_message(e)
        if message:
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
        raise
    log.info("%s finished in %.1fs", stage, time.monotonic() - start)
