"""The class archive `make setup` builds (lakerec.class_archive): sessions map it, and a broken one is never put in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lakerec import class_archive, metastore
from lakerec.spark import driver_class_path, java_version


def _vm_option(spark, name: str) -> str:
    jvm = spark._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
    return bean.getVMOption(name).getValue()


def test_the_session_maps_the_archive_setup_built_for_this_java_and_class_path(spark):
    java, version = java_version()
    archive = class_archive.path(java, version, driver_class_path())
    assert archive.is_file(), f"no class archive at {archive}: `make setup` builds it (python -m lakerec.class_archive)"
    assert _vm_option(spark, "SharedArchiveFile") == str(archive)
    # Another Java build or another class path has an archive of its own (none until setup builds it).
    assert class_archive.path(java, version + " (another build)", driver_class_path()) != archive
    assert class_archive.path(java, version, driver_class_path()[:-1]) != archive


def test_a_truncated_archive_is_not_usable(tmp_path):
    crash_logs = set(Path.cwd().glob("hs_err_pid*.log"))
    java, version = java_version()
    archive = class_archive.path(java, version, driver_class_path())
    assert class_archive.usable(java, archive)
    cut = tmp_path / "cut.jsa"
    with archive.open("rb") as f:
        cut.write_bytes(f.read(4_000_000))  # a JVM given it crashes: build() must never install it
    assert not class_archive.usable(java, cut)
    assert not class_archive.usable(java, tmp_path / "missing.jsa")
    assert set(Path.cwd().glob("hs_err_pid*.log")) == crash_logs  # the crash's log stays out of the caller's folder


def test_a_driver_started_with_a_flight_recording_starts_without_the_archive(tmp_path):
    """Java 17 crashes mapping the archive under a class-loading hook (a recording started with
    the JVM, a Java agent): such a driver starts without it, and its recording is written."""
    recording = tmp_path / "driver.jfr"
    script = ("import sys\nfrom lakerec.config import load_config\nfrom lakerec.spark import get_spark\n"
              "cfg = load_config(None, lake=sys.argv[1], spark__master='local[1]')\n"
              "print('rows', get_spark(cfg).range(3).count())\n")
    options = (f"{os.environ.get('SPARK_SUBMIT_OPTS', '')} -XX:StartFlightRecording:filename={recording} "
               f"-XX:FlightRecorderOptions:repository={tmp_path}")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "lake")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "SPARK_SUBMIT_OPTS": options})
    assert out.returncode == 0 and "rows 3" in out.stdout, out.stderr[-3000:]
    assert recording.stat().st_size > 0
    assert not list(tmp_path.glob("hs_err_pid*"))
    metastore.stop_all_under(tmp_path)
