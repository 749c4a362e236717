"""Ingest on generated Ali-CCP files: every line accounted for, planted errors found, CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lakerec import ingest
from lakerec.aliccp.generator import generate
from lakerec.schema import tables as T
from lakerec.schema.fields import raw_file_name
from lakerec.config import override
from tests.conftest import REPO

pytestmark = pytest.mark.heavy(seconds=95)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    generate(out, ("train", "test"), impressions=4000, users=200, items=500, seed=3, malformed=14)
    return out


def count_file(path):
    """Independent count: lines, and features of every line (\\x01-separated), from the bytes."""
    lines = path.read_bytes().split(b"\n")[:-1]
    return len(lines)


def test_reconcile_and_planted_errors_on_generated_data(spark, cfg, raw):
    # 14 planted lines per split are over the default quarantine share of files this small
    reports = ingest.run(spark, override(cfg, ingest__max_quarantine_share=1.0), str(raw))
    expected = json.loads((raw / "oracle" / "malformed.json").read_text())
    for r in reports:
        name = raw_file_name(r.file, r.split)
        assert r.lines_read == count_file(raw / name)
        assert r.lines_read == r.rows_written + r.rows_quarantined
        assert r.quarantined_by_reason == expected[r.split][r.file]
    # every id of every valid line is in the exploded views: count features straight from the files
    planted = json.loads((raw / "oracle" / "malformed_lines.json").read_text())
    for r in reports:
        bad = {line for line, _ in planted[r.split][r.file]}
        cvc = {q.line_number for q in spark.table(cfg.table("quarantine"))
               .where(f"split = '{r.split}' AND file = '{r.file}'").collect()}
        text = (raw / raw_file_name(r.file, r.split)).read_text().split("\n")[:-1]
        features = sum(line.split(",")[-1].count("\x01") + 1 for i, line in enumerate(text, 1)
                       if i not in bad and i not in cvc and line.split(",")[-1])
        assert r.features_written == features
        view = T.SKELETON_FEATURES if r.file == "skeleton" else T.COMMON_FEATURES
        assert spark.table(cfg.table(view.name)).where(f"split = '{r.split}'").count() == features


def test_cli_end_to_end(tmp_path):
    """generate → ingest → sql through the command line, as a user runs them."""
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    gen = subprocess.run([sys.executable, "-m", "lakerec.jobs.generate", "--out", str(raw), "--split", "train",
                          "--impressions", "2000", "--users", "100", "--items", "300", "--malformed", "12"],
                         cwd=REPO, capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    run = subprocess.run([sys.executable, "-m", "lakerec.jobs.ingest", "--raw", str(raw), "--splits", "train", "--lake", str(lake),
                          "--force"],  # 12 planted lines are over the quarantine share of a file this small
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "lines read = rows written + rows quarantined: yes, for every file" in run.stdout
    q = subprocess.run([sys.executable, "-m", "lakerec.jobs.sql", "--lake", str(lake), "--format", "csv",
                        "SELECT sum(rows_written + rows_quarantined) = sum(lines_read) AS ok, sum(lines_read) AS n "
                        "FROM aliccp.ingest_report"], cwd=REPO, capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    ok, n = q.stdout.strip().splitlines()[-1].split(",")
    lines = sum(count_file(raw / f) for f in ("sample_skeleton_train.csv", "common_features_train.csv"))
    assert ok == "true" and int(n) == lines
    bad = subprocess.run([sys.executable, "-m", "lakerec.jobs.ingest", "--raw", str(tmp_path / "nowhere"), "--lake", str(lake)],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "not found" in bad.stderr and "Traceback" not in bad.stderr
