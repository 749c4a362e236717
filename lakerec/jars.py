"""Delta Lake jars: fetched once from Maven Central into a cache folder, then reused.

Spark's own resolver (`spark.jars.packages`, Ivy) is tried first; if it cannot reach the
repository, Maven (`mvn`, which honours ~/.m2/settings.xml) is tried. Sessions then point
`spark.jars` at the cached files, so no session resolves anything again.

    python -m lakerec.jars      # fetch now (the Makefile's set-up does this)
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lakerec.errors import SetupError

SCALA = "2.12"


def delta_version() -> str:
    return importlib.metadata.version("delta-spark")


def cache_dir() -> Path:
    root = os.environ.get("LAKEREC_JARS_DIR") or Path.home() / ".cache" / "lakerec" / "jars"
    return Path(root) / f"delta-{delta_version()}"


def _artifacts() -> list[tuple[str, str, str]]:
    v = delta_version()
    return [("io.delta", f"delta-spark_{SCALA}", v), ("io.delta", "delta-storage", v)]


def _expected(folder: Path) -> list[Path]:
    return [folder / f"{a}-{v}.jar" for _, a, v in _artifacts()]


def _fetch_with_ivy(folder: Path) -> None:
    """Let Spark's Ivy resolve the packages once, then copy the jars into the cache."""
    ivy = folder.parent / "ivy"
    coords = ",".join(f"{g}:{a}:{v}" for g, a, v in _artifacts())
    code = (
        "from pyspark.sql import SparkSession;"
        f"s=SparkSession.builder.master('local[1]').config('spark.jars.packages','{coords}')"
        f".config('spark.jars.ivy',r'{ivy}').config('spark.ui.enabled','false').getOrCreate();s.stop()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=900)
    for path in _expected(folder):
        src = ivy / "jars" / f"io.delta_{path.name}"
        shutil.copy(src, path)


def _fetch_with_maven(folder: Path) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise FileNotFoundError("mvn not found")
    for g, a, v in _artifacts():
        subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={g}:{a}:{v}", f"-DoutputDirectory={folder}"],
            check=True, capture_output=True, timeout=900,
        )


def delta_jars(fetch: bool = True) -> list[Path]:
    """The cached Delta jars, fetched first if missing.

    Raises:
        SetupError: the jars are not cached and neither Ivy nor Maven could fetch them.
    """
    folder = cache_dir()
    wanted = _expected(folder)
    if all(p.is_file() for p in wanted):
        return wanted
    if not fetch:
        raise SetupError(f"Delta jars are not cached in {folder}: run `python -m lakerec.jars`")
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for fetcher in (_fetch_with_ivy, _fetch_with_maven):
        try:
            fetcher(folder)
            if all(p.is_file() for p in wanted):
                return wanted
        except (subprocess.SubprocessError, OSError) as e:
            errors.append(f"{fetcher.__name__}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    coords = ", ".join(f"{g}:{a}:{v}" for g, a, v in _artifacts())
    raise SetupError(
        f"could not fetch the Delta Lake jars ({coords}) from Maven Central ({'; '.join(errors)}). "
        f"Check network access to Maven Central (or a mirror in ~/.m2/settings.xml), or put the jars "
        f"in {folder} yourself (or point LAKEREC_JARS_DIR at a folder holding delta-{delta_version()}/)."
    )


if __name__ == "__main__":
    for p in delta_jars():
        print(p)
