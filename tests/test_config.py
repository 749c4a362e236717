"""Typed config: validated once when built, one option table for flags and notebooks, --set for the rest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lakerec import cli, options
from lakerec.config import Config, field_type, load_config, override, parse_assignment
from lakerec.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / "conf" / "local.yml"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train.epochs": 0}, "--epochs or train.epochs must be a positive integer, got 0"),
        ({"train.temperature": 0.0}, "--temperature or train.temperature must be > 0, got 0.0"),
        ({"train.learning_rate": -1}, "--learning-rate or train.learning_rate must be > 0, got -1.0"),
        ({"train.optimizer": "rmsprop"}, "train.optimizer must be one of adagrad, adam, sgd, got 'rmsprop'"),
        ({"train.features": "some"}, "--features or train.features must be one of ids, all, got 'some'"),
        ({"train.ks": []}, "train.ks must be a non-empty list"),
        ({"train.hidden_units": [64, 0]}, r"train.hidden_units must be a list of whole numbers >= 1, got \(64, 0\)"),
        ({"train.monitor_rows": -1}, "train.monitor_rows must be at least 0, got -1"),
        ({"spark.shuffle_partitions": 0}, "spark.shuffle_partitions must be a positive integer"),
        ({"train.epochs": 2.5}, "train.epochs: expected a whole number, got 2.5"),
    ],
)
def test_every_rule_is_checked_when_a_config_is_built(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(LOCAL, values)
    with pytest.raises(ConfigError, match=message):
        override(load_config(LOCAL), values)


def test_all_problems_of_a_section_are_reported_together():
    with pytest.raises(ConfigError) as e:
        load_config(LOCAL, {"train.epochs": 0, "train.batch_size": 0})
    assert "train.epochs" in str(e.value) and "train.batch_size" in str(e.value)


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.temperature=0.5", "train.temperature", 0.5),
        ("train.logq_correction=false", "train.logq_correction", False),
        ("train.hidden_units=[128, 64]", "train.hidden_units", [128, 64]),
        ("train.checkpoint_dir=null", "train.checkpoint_dir", None),
        ("mlflow.registered_model=", "mlflow.registered_model", ""),
        ("spark.extra.spark.sql.ansi.enabled=true", "spark.extra.spark.sql.ansi.enabled", True),
    ],
)
def test_set_reads_the_value_as_yaml(text, key, value):
    assert parse_assignment(text) == (key, value)


def test_set_reaches_every_setting_including_spark_keys_with_dots():
    cfg = load_config(LOCAL, {"train.hidden_units": [128, 64], "train.logq_correction": False,
                              "spark.extra.spark.sql.ansi.enabled": True})
    assert cfg.train.hidden_units == (128, 64) and cfg.train.logq_correction is False
    assert cfg.spark.extra == {"spark.sql.ansi.enabled": "true"}  # what Spark expects, not "True"
    assert cfg.filter.min_item_count == 5  # the rest as in the file


@pytest.mark.parametrize("text", ["train.temperature", "=3"])
def test_a_malformed_assignment_is_refused(text):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment(text)


def test_an_unknown_key_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['temprature'\].*'temperature'"):
        load_config(LOCAL, {"train.temprature": 0.5})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['trian'\]"):
        load_config(LOCAL, {"trian.epochs": 2})


def test_every_option_is_a_config_key_with_a_distinct_flag():
    for option in options.OPTIONS:
        field_type(option.key)  # raises for a key the config does not have
    assert len({o.flag for o in options.OPTIONS}) == len(options.OPTIONS)


def test_flags_are_typed_from_the_config_and_set_wins_last():
    # lake="none": the config alone (a read job would first refuse a --lake that is not there)
    p = cli.parser("train", "test", ("train.epochs", "train.features", "train.gpu", "filter.kcore"), lake="none")
    args = p.parse_args(["--epochs", "7", "--features", "ids", "--gpu", "--no-kcore",
                         "--set", "train.epochs=9", "--set", "train.temperature=0.2"])
    cfg = cli.config_from_args(args)
    assert (cfg.train.epochs, cfg.train.features, cfg.train.gpu, cfg.filter.kcore) == (9, "ids", True, False)
    assert cfg.train.temperature == 0.2
    with pytest.raises(SystemExit):
        p.parse_args(["--features", "some"])  # choices come from the config's Literal


def test_flags_not_given_keep_the_file():
    args = cli.parser("train", "test", ("train.epochs",), lake="none").parse_args([])
    assert cli.given_values(args) == {}
    assert cli.config_from_args(args) == load_config(LOCAL)


def _leaves(data: dict, prefix: str = ""):
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "extra":
            yield from _leaves(v, key + ".")
        else:
            yield key, v


@pytest.mark.parametrize("path", sorted((REPO / "conf").glob("*.yml")), ids=lambda p: p.name)
def test_a_target_file_holds_only_what_differs_from_the_defaults(path):
    defaults = dataclasses.asdict(Config())
    for key, value in _leaves(yaml.safe_load(path.read_text()) or {}):
        default = defaults
        for part in key.split("."):
            default = default[part]
        if isinstance(default, tuple):
            default = list(default)
        assert value != default, f"{path.name}: {key} = {value!r} is the default already"


def test_a_bad_set_ends_in_one_line_before_spark_starts(capsys):
    from lakerec.jobs import filter as filter_job

    with pytest.raises(SystemExit) as e:
        filter_job.main(["--set", "filter.min_user_count=0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --min-user-count or filter.min_user_count must be a positive integer, got 0"


def test_option_names_are_what_notebooks_and_flags_share():
    assert options.BY_NAME["epochs"].key == "train.epochs" and options.BY_NAME["epochs"].flag == "--epochs"
    assert options.describe("train.seed") == "train.seed"  # no flag: reachable with --set


def test_a_flag_is_checked_by_its_config_rule_while_arguments_are_parsed(capsys):
    p = cli.parser("train", "test", ("train.epochs", "train.temperature"))
    for argv, message in ((["--epochs", "0"], "--epochs or train.epochs must be a positive integer, got 0"),
                          (["--temperature", "-1"], "--temperature or train.temperature must be > 0, got -1.0"),
                          (["--epochs", "two"], "expected a whole number, got 'two'")):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
        assert message in capsys.readouterr().err
