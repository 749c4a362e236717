"""Ingest refuses input that would replace good tables with bad ones, before changing anything:
an empty file, compressed bytes in a .csv, a mostly quarantined file, a split replaced by far
fewer rows. `.csv.gz` is read as it is; duplicated sample ids are quarantined."""

from __future__ import annotations

import gzip
import subprocess
import sys
import tarfile

import pytest

from lakerec import ingest
from lakerec.aliccp import reasons as R
from lakerec.config import override
from lakerec.errors import InputDataError, OutdatedLakeError, SuspiciousInputError
from lakerec.schema import tables as T
from lakerec.tables import table_version
from tests.conftest import REPO
from tests.test_ingest import common, skel, write_raw

pytestmark = pytest.mark.heavy(seconds=115)

USERS = [common(f"a{i}", ("101", str(100 + i), "1.0")) for i in range(10)]
IMPRESSIONS = [skel(i, i % 2, 0, f"a{i % 10}", ("205", str(4000 + i % 7), "1.0")) for i in range(1, 41)]
TABLES = tuple(t.name for t in T.stored() if t.job == T.INGEST)  # lake_runs too: a refusal records no run


@pytest.fixture(scope="module")
def lake_cfg(base_cfg, spark, tmp_path_factory):
    """A database holding one good ingest of 40 train impressions (the tables the refusals must leave alone)."""
    cfg = override(base_cfg, database="refusals")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    good = tmp_path_factory.mktemp("good")
    write_raw(good, "train", USERS, IMPRESSIONS)
    ingest.run(spark, cfg, str(good), ("train",))
    return cfg


def versions(spark, cfg):
    return {t: table_version(spark, cfg.table(t)) for t in TABLES}


def test_suspicious_input_is_refused_and_no_table_changes(spark, lake_cfg, tmp_path):
    before = versions(spark, lake_cfg)
    # An empty skeleton.
    write_raw(tmp_path / "empty", "train", USERS, [])
    (tmp_path / "empty" / "sample_skeleton_train.csv").write_bytes(b"")
    with pytest.raises(SuspiciousInputError, match="sample_skeleton_train.csv has no lines"):
        ingest.run(spark, lake_cfg, str(tmp_path / "empty"), ("train",))
    # Far fewer rows than the split holds: 10 valid impressions against 40 (ratio 0.5).
    write_raw(tmp_path / "few", "train", USERS, IMPRESSIONS[:10])
    with pytest.raises(SuspiciousInputError, match=r"train: 10 valid impressions would replace the 40"):
        ingest.run(spark, lake_cfg, str(tmp_path / "few"), ("train",))
    # Mostly quarantined: 20 of the 40 lines have a bad label.
    bad = IMPRESSIONS[:20] + [line.replace(",0,0,", ",7,0,", 1).replace(",1,0,", ",7,0,", 1) for line in IMPRESSIONS[20:]]
    write_raw(tmp_path / "bad", "train", USERS, bad)
    with pytest.raises(SuspiciousInputError, match=r"20 of 40 lines quarantined \(50%, most as bad_label\)"):
        ingest.run(spark, lake_cfg, str(tmp_path / "bad"), ("train",))
    # Gzip bytes saved as .csv: named, with how to fix it, before Spark reads a line.
    write_raw(tmp_path / "gz", "train", USERS, IMPRESSIONS)
    skeleton = tmp_path / "gz" / "sample_skeleton_train.csv"
    skeleton.write_bytes(gzip.compress(skeleton.read_bytes()))
    with pytest.raises(InputDataError, match="holds gzip bytes, not text: rename it sample_skeleton_train.csv.gz"):
        ingest.run(spark, lake_cfg, str(tmp_path / "gz"), ("train",))
    # The archive the real data ships as, not unpacked.
    (tmp_path / "tar").mkdir()
    with tarfile.open(tmp_path / "tar" / "sample_train.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "few" / "sample_skeleton_train.csv", arcname="sample_skeleton_train.csv")
    with pytest.raises(InputDataError, match=r"sample_train.tar.gz is an archive: unpack it"):
        ingest.run(spark, lake_cfg, str(tmp_path / "tar"), ("train",))
    assert versions(spark, lake_cfg) == before


def test_force_replaces_anyway(spark, lake_cfg, tmp_path):
    write_raw(tmp_path / "few", "train", USERS, IMPRESSIONS[:10])
    ingest.run(spark, override(lake_cfg, ingest__force=True), str(tmp_path / "few"), ("train",))
    assert spark.table(lake_cfg.table("samples")).count() == 10
    # Back to the 40 (more rows than held is never refused).
    write_raw(tmp_path / "all", "train", USERS, IMPRESSIONS)
    ingest.run(spark, lake_cfg, str(tmp_path / "all"), ("train",))
    assert spark.table(lake_cfg.table("samples")).count() == 40


def test_csv_gz_is_read_directly_and_duplicate_sample_ids_are_quarantined(spark, cfg, tmp_path):
    repeated = IMPRESSIONS + IMPRESSIONS[:2]  # lines 41, 42 repeat sample ids 1, 2
    write_raw(tmp_path / "raw", "train", USERS, repeated)
    for name in ("sample_skeleton_train.csv", "common_features_train.csv"):
        path = tmp_path / "raw" / name
        (tmp_path / "raw" / f"{name}.gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    reports = {r.file: r for r in ingest.run(spark, cfg, str(tmp_path / "raw"), ("train",))}
    assert reports["skeleton"].path.endswith("sample_skeleton_train.csv.gz")
    assert (reports["skeleton"].lines_read, reports["skeleton"].rows_written) == (42, 40)
    assert reports["skeleton"].quarantined_by_reason == {R.DUPLICATE_SAMPLE_ID: 2}
    quarantined = spark.table(cfg.table("quarantine")).where("file = 'skeleton'").orderBy("line_number").collect()
    assert [(q.line_number, q.reason, q.raw_line) for q in quarantined] == [
        (41, R.DUPLICATE_SAMPLE_ID, IMPRESSIONS[0]), (42, R.DUPLICATE_SAMPLE_ID, IMPRESSIONS[1])]
    samples = spark.table(cfg.table("samples"))
    assert samples.select("sample_id").distinct().count() == samples.count() == 40


def test_the_cli_refuses_in_one_line_with_exit_status_2(tmp_path):
    """Before Spark starts: a file for --lake, a missing --raw; after: an empty file."""
    (tmp_path / "lakefile").write_text("")
    lake = subprocess.run([sys.executable, "-m", "lakerec.jobs.ingest", "--raw", str(tmp_path), "--lake",
                           str(tmp_path / "lakefile")], cwd=REPO, capture_output=True, text=True)
    assert lake.returncode == 2 and "is a file, not a folder" in lake.stderr and "Traceback" not in lake.stderr
    raw = subprocess.run([sys.executable, "-m", "lakerec.jobs.ingest", "--raw", str(tmp_path / "nowhere"), "--lake",
                          str(tmp_path / "lake")], cwd=REPO, capture_output=True, text=True)
    assert raw.returncode == 2 and "raw folder" in raw.stderr and "not found" in raw.stderr
    assert not (tmp_path / "lake").exists()  # refused before Spark started: no lake made


def test_a_lake_in_the_older_layout_is_rewritten_whole_or_not_at_all(spark, cfg, tmp_path):
    """Before the exploded tables were views, they were stored, and samples had no other_features.
    Replacing one split of such a lake would mix two layouts: refused, naming every split to ingest;
    a run of every split rewrites the tables in the current layout and drops the stored explode."""
    write_raw(tmp_path / "raw", "train", USERS, IMPRESSIONS)
    write_raw(tmp_path / "raw", "test", USERS, IMPRESSIONS[:10])
    ingest.run(spark, cfg, str(tmp_path / "raw"), ("train", "test"))
    # The older layout: samples without other_features, skeleton_features a stored table.
    stored = spark.table(cfg.table("skeleton_features")).localCheckpoint()
    samples = spark.table(cfg.table("samples")).drop(T.OTHER_FEATURES).localCheckpoint()
    samples.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(cfg.table("samples"))
    spark.sql(f"DROP VIEW {cfg.table('skeleton_features')}")
    stored.write.format("delta").partitionBy("split", "field").saveAsTable(cfg.table("skeleton_features"))
    before = {t: table_version(spark, cfg.table(t)) for t in ("samples", "skeleton_features", "user_contexts")}

    with pytest.raises(OutdatedLakeError, match=r"skeleton_features is a stored table \(now a view\); samples has no "
                                                r"other_features\), and this run leaves out test: .*--splits train,test"):
        ingest.run(spark, cfg, str(tmp_path / "raw"), ("train",))
    assert {t: table_version(spark, cfg.table(t)) for t in before} == before

    reports = ingest.run(spark, cfg, str(tmp_path / "raw"), ("train", "test"))
    assert spark.catalog.getTable(cfg.table("skeleton_features")).tableType == "VIEW"
    assert T.OTHER_FEATURES in spark.table(cfg.table("samples")).columns
    assert spark.table(cfg.table("skeleton_features")).count() == sum(
        r.features_written for r in reports if r.file == "skeleton") == 50
