"""Jars from Maven Central, fetched once into a cache folder, then reused: Delta Lake's, and
Derby's network server and client (the local catalog server, lakerec.metastore), of the
version of the Derby engine that ships in pyspark's jars.

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


def pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def derby_jar() -> Path:
    """The Derby engine jar that ships with pyspark (the embedded catalog's, the server's engine)."""
    found = sorted(pyspark_jars_dir().glob("derby-[0-9]*.jar"))
    if not found:
        raise SetupError(f"no derby-*.jar in {pyspark_jars_dir()}: reinstall pyspark (make setup)")
    return found[-1]


def derby_version() -> str:
    return derby_jar().name[len("derby-"):-len(".jar")]


def cache_root() -> Path:
    """The jars cache (LAKEREC_JARS_DIR, else ~/.cache/lakerec/jars); lakerec.class_archive keeps its archives beside it."""
    return Path(os.environ.get("LAKEREC_JARS_DIR") or Path.home() / ".cache" / "lakerec" / "jars")


def cache_dir() -> Path:
    return cache_root() / f"delta-{delta_version()}"


def _artifacts() -> list[tuple[str, str, str]]:
    v = delta_version()
    return [("io.delta", f"delta-spark_{SCALA}", v), ("io.delta", "delta-storage", v)]


def _derby_artifacts() -> list[tuple[str, str, str]]:
    v = derby_version()
    return [("org.apache.derby", "derbynet", v), ("org.apache.derby", "derbyclient", v)]


def _expected(folder: Path, artifacts) -> list[Path]:
    return [folder / f"{a}-{v}.jar" for _, a, v in artifacts]


def _fetch_with_ivy(folder: Path, artifacts) -> None:
    """Let Spark's Ivy resolve the packages once, then copy the jars into the cache."""
    ivy = folder.parent / "ivy"
    coords = ",".join(f"{g}:{a}:{v}" for g, a, v in artifacts)
    code = (
        "from pyspark.sql import SparkSession;"
        f"s=SparkSession.builder.master('local[1]').config('spark.jars.packages','{coords}')"
        f".config('spark.jars.ivy',r'{ivy}').config('spark.ui.enabled','false').getOrCreate();s.stop()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=900)
    for (group, _, _), path in zip(artifacts, _expected(folder, artifacts)):
        src = ivy / "jars" / f"{group}_{path.name}"
        shutil.copy(src, path)


def _fetch_with_maven(folder: Path, artifacts) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise FileNotFoundError("mvn not found")
    for g, a, v in artifacts:
        subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={g}:{a}:{v}", f"-DoutputDirectory={folder}"],
            check=True, capture_output=True, timeout=900,
        )


def _cached(what: str, folder: Path, artifacts, fetch: bool) -> list[Path]:
    """The artifacts' jars in `folder`, fetched first if missing (Ivy, then Maven)."""
    wanted = _expected(folder, artifacts)
    if all(p.is_file() for p in wanted):
        return wanted
    if not fetch:
        raise SetupError(f"the {what} jars are not cached in {folder}: run `python -m lakerec.jars`")
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for fetcher in (_fetch_with_ivy, _fetch_with_maven):
        try:
            fetcher(folder, artifacts)
            if all(p.is_file() for p in wanted):
                return wanted
        except (subprocess.SubprocessError, OSError) as e:
            errors.append(f"{fetcher.__name__}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    coords = ", ".join(f"{g}:{a}:{v}" for g, a, v in artifacts)
    raise SetupError(
        f"could not fetch the {what} jars ({coords}) from Maven Central ({'; '.join(errors)}). "
        f"Check network access to Maven Central (or a mirror in ~/.m2/settings.xml), or put the jars "
        f"in {folder} yourself (or point LAKEREC_JARS_DIR at a folder holding {folder.name}/)."
    )


def delta_jars(fetch: bool = True) -> list[Path]:
    """The cached Delta jars, fetched first if missing.

    Raises:
        SetupError: the jars are not cached and neither Ivy nor Maven could fetch them.
    """
    return _cached("Delta Lake", cache_dir(), _artifacts(), fetch)


def derby_network_jars(fetch: bool = True) -> list[Path]:
    """The cached Derby network server and client jars (derbynet, derbyclient), fetched first if missing.

    Raises:
        SetupError: the jars are not cached and neither Ivy nor Maven could fetch them.
    """
    return _cached("Derby network", cache_root() / f"derby-{derby_version()}", _derby_artifacts(), fetch)


def derby_client_jar(fetch: bool = True) -> Path:
    return next(p for p in derby_network_jars(fetch) if p.name.startswith("derbyclient-"))


if __name__ == "__main__":
    for p in delta_jars() + derby_network_jars():
        print(p)
