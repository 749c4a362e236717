"""The class archive `make setup` builds (lakerec.class_archive): sessions map it, and a broken one is never put in place."""

from __future__ import annotations

from pathlib import Path

from lakerec import class_archive
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
