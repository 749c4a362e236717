"""A class-data-sharing (CDS) archive of the local Spark driver's classes: a Spark start maps them, not loads them.

A local session loads some twenty thousand classes (Spark, Delta, Hive's catalog client) from
about 250 jars, parsing and verifying each one, and every job, notebook kernel and test that
starts a process pays it again. The JVM can dump the classes a run loaded into an archive
(`-XX:ArchiveClassesAtExit`) and map that archive in later runs (`-XX:SharedArchiveFile`):
a Spark start 4-5 s sooner (README, "A class archive for every Spark start").

    python -m lakerec.class_archive     # build it now (`make setup` does this)

An archive belongs to one Java build and one class path, so its file name carries a digest of
both: after a Java, pyspark or Delta upgrade there is simply no archive for the new ones until
this is run again, and a session without one starts as before. A new archive is tried by a
separate JVM before it is put in place (a truncated one would crash the JVM that maps it).

A JVM started with a class-transforming Java agent or a flight recording crashes as it maps the
archive (Java 17.0.15: `KlassFactory::check_shared_class_file_load_hook`), so a driver whose
options start one (SPARK_SUBMIT_OPTS, JAVA_TOOL_OPTIONS, ...) starts without the archive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lakerec import jars

# While set (the child process of build()), sessions dump their classes here at exit instead of mapping an archive.
DUMP_TO: Path | None = None
_QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # an unusable archive is skipped without a word on stdout
# Options that hook class loading (an agent, a recording started with the JVM), and where a driver's JVM finds options.
_HOOKS = ("-javaagent:", "-agentlib:", "-agentpath:", "-XX:StartFlightRecording")
OPTION_VARIABLES = ("SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "PYSPARK_SUBMIT_ARGS")

log = logging.getLogger("lakerec.class_archive")


def folder() -> Path:
    return jars.cache_root().parent / "class_archives"


def path(java: str, java_version: str, class_path: list[Path]) -> Path:
    """Where the archive for this Java (its executable and `java -version` text) and driver class path lives."""
    digest = hashlib.sha256()
    for part in (java, java_version, *map(str, class_path)):
        digest.update(part.encode() + b"\0")
    digest.update(str(jars.pyspark_jars_dir()).encode() + b"\0")
    for jar in sorted(jars.pyspark_jars_dir().glob("*.jar")):  # the class path spark-submit adds
        digest.update(f"{jar.name}:{jar.stat().st_size}".encode() + b"\0")
    return folder() / f"spark-{digest.hexdigest()[:16]}.jsa"


def hooked_by() -> str | None:
    """The environment variable whose JVM options hook class loading (a Java agent, a flight recording), if any."""
    return next((v for v in OPTION_VARIABLES if any(h in os.environ.get(v, "") for h in _HOOKS)), None)


def java_options(archive: Path) -> str:
    """The driver JVM's options: dump the classes (while building), map the archive (when there is one), or none."""
    if DUMP_TO is not None:
        return f'-XX:ArchiveClassesAtExit="{DUMP_TO}"'
    if not archive.is_file():
        return ""
    hook = hooked_by()
    if hook:
        log.info("starting Spark without the class archive: %s starts a Java agent or a flight recording, "
                 "and the JVM crashes mapping an archive under one", hook)
        return ""
    return f'-XX:SharedArchiveFile="{archive}" {_QUIET}'


# What the child runs: the operations every job does (a Delta table created, overwritten by a
# condition, read, its history; a view; the catalog), so their classes are in the archive.
_WORKLOAD = """
import sys
from pathlib import Path
from pyspark.sql import functions as F
from lakerec import class_archive
from lakerec.config import load_config
from lakerec.spark import get_spark
from delta.tables import DeltaTable

class_archive.DUMP_TO = Path(sys.argv[1])
cfg = load_config(None, lake=sys.argv[2], spark__master="local[2]", spark__local_metastore=True)
spark = get_spark(cfg)
df = spark.range(1000).select((F.col("id") % 3).cast("string").alias("split"), "id", F.rand(1).alias("x"))
df.writeTo("t").using("delta").partitionedBy(F.col("split")).create()
df.writeTo("t").overwrite(F.expr("split IN ('1')"))
spark.sql("CREATE OR REPLACE VIEW v AS SELECT split, count(*) AS n, avg(x) AS x FROM t GROUP BY split")
spark.table("v").join(spark.table("t"), "split").where("id < 10").collect()
DeltaTable.forName(spark, "t").history(1).collect()
spark.catalog.tableExists("t")
print(spark._jvm.java.lang.ProcessHandle.current().pid(), flush=True)
"""


def build(timeout: float = 600) -> Path | None:
    """Build the archive for this machine's Java and Spark (once: an existing one is kept); its path, or None if none could be built."""
    from lakerec.spark import driver_class_path, java_version

    java, version = java_version()
    target = path(java, version, driver_class_path())
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lakerec-cds-") as work:
        dump = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        out = subprocess.run([sys.executable, "-c", _WORKLOAD, str(dump), str(Path(work) / "lake")],
                             capture_output=True, text=True, timeout=timeout)
        jvm = int(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.split() else None
        deadline = time.monotonic() + 120
        while jvm is not None and _alive(jvm) and time.monotonic() < deadline:  # it writes the archive as it exits
            time.sleep(0.2)
        from lakerec import metastore

        metastore.stop_all_under(Path(work))
        if not usable(java, dump):
            dump.unlink(missing_ok=True)
            return None
        os.replace(dump, target)
    return target


def usable(java: str, archive: Path) -> bool:
    """Whether a JVM starts with this archive given (a truncated one crashes it; one of another class path is skipped)."""
    if not archive.is_file():
        return False
    with tempfile.TemporaryDirectory(prefix="lakerec-cds-check-") as crash_dir:  # where a crash writes its hs_err log
        return subprocess.run([java, f"-XX:SharedArchiveFile={archive}", *_QUIET.split(), "-version"],
                              capture_output=True, cwd=crash_dir).returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    built = build()
    if built:
        print(built)
    else:
        print("warning: no class archive could be built: Spark starts without one, as before", file=sys.stderr)
