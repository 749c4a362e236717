"""The one SparkSession factory: Delta Lake configured, a catalog, local defaults.

Every job, notebook and test gets its session from `get_spark`. Locally the catalog is a
Hive metastore in Derby kept inside the lake folder, so tables registered by one process
(`aliccp.samples`) are found by name from the next; the lake's Derby network server
(`lakerec.metastore`, started on loopback when needed) serves it, so several processes use
one lake at once (a job writing while queries run). On Databricks or Synapse
(`spark.master: null` in the target's config) the platform's own session and catalog are used.

Delta's jars come from Maven Central once and are cached (see `lakerec.jars`), so a session
start does not resolve them again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from lakerec.config import Config
from lakerec.errors import SetupError
from lakerec import class_archive, jars, metastore, scratch

log = logging.getLogger("lakerec.spark")

# The JVM's logging (shipped as package data): every line to stderr, the local catalog's
# expected warnings at ERROR. See the file for which loggers and why.
LOG4J2_CONFIG = Path(__file__).resolve().parent / "conf" / "log4j2.properties"


def _java_options(lake: Path, local_dir: Path, archive: Path) -> str:
    """The driver JVM's options: Derby's home in the lake, scratch files, LakeRec's log4j2 file,
    and the class archive (lakerec.class_archive) when setup built one.

    Quoted: Spark splits these options like a shell, and a lake path may hold spaces.
    """
    quiet = "warn" if os.environ.get("LAKEREC_VERBOSE") == "1" else "error"
    return (f'-Dderby.system.home="{lake}" -Djava.io.tmpdir="{local_dir}" '
            f'-Dlog4j2.configurationFile="{LOG4J2_CONFIG.as_uri()}" -Dlakerec.quiet={quiet} '
            + class_archive.java_options(archive))


def java_version() -> tuple[str, str]:
    """The java executable Spark will start (JAVA_HOME's, else the PATH's) and its `java -version` text.

    Raises:
        SetupError: no Java, or not Java 17 (or 11).
    """
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else None
    exe = str(java) if java and java.exists() else shutil.which("java")
    if not exe:
        raise SetupError(
            "Java was not found: Spark needs Java 17. Install it (Debian/Ubuntu: "
            "`apt-get install openjdk-17-jre-headless`) or set JAVA_HOME, then retry."
        )
    out = subprocess.run([exe, "-version"], capture_output=True, text=True).stderr
    if '"17.' not in out and '"11.' not in out:
        first = out.splitlines()[0] if out else "unknown"
        raise SetupError(f"Spark 3.5 needs Java 17 (or 11); found {first}. Set JAVA_HOME to a Java 17.")
    return exe, out


def driver_class_path() -> list[Path]:
    """What a local session puts on the driver JVM's class path besides pyspark's jars: Delta's
    jars, and the Derby client the local catalog's DataNucleus loads."""
    return [*jars.delta_jars(), jars.derby_client_jar()]


def metastore_dir(lake: Path) -> Path:
    return metastore.database_dir(lake)


def warehouse_dir(lake: Path) -> Path:
    return lake / "warehouse"


def check_lake(cfg: Config) -> Path:
    """The local lake's folder, refused in one line when the path is a file (before Spark starts)."""
    lake = cfg.lake_path
    if lake.exists() and not lake.is_dir():
        raise SetupError(f"--lake {lake} is a file, not a folder: give the lake's folder (it is created if missing)")
    return lake


def require_lake(cfg: Config) -> Path | None:
    """The local lake a job reads, refused in one line when it is not there (before Spark starts).

    A session would otherwise create an empty lake at a mistyped `--lake` and the job would
    then find no tables. Only the jobs that create a lake (ingest, movielens, demo) skip this
    (lakerec.cli.parser's `lake="creates"`). On a platform catalog (`spark.master: null`) or
    without the local metastore there is no folder to check.
    """
    if cfg.spark.master is None or not cfg.spark.local_metastore:
        return None
    lake = check_lake(cfg)
    create = "python -m lakerec.jobs.ingest --raw DIR (or jobs.movielens, jobs.demo)"
    if not lake.exists():
        raise SetupError(f"no lake at {lake}: check --lake (or `lake:` in the config), or create it with {create}")
    if not metastore_dir(lake).is_dir():
        raise SetupError(f"{lake} is not a lake: it has no catalog ({metastore_dir(lake).name}/). "
                         f"Check --lake, or create the lake with {create}")
    return lake


def _check_catalog(spark, server: metastore.Server, lake: Path) -> None:
    """Open the catalog database once through the server before Hive does, so that a database
    another process holds is one line now, not Hive's retries and stack traces for 40 s."""
    from py4j.protocol import Py4JJavaError

    try:
        spark._jvm.java.sql.DriverManager.getConnection(server.url).close()
    except Py4JJavaError as e:
        chain, cause = [], e.java_exception
        while cause is not None and len(chain) < 8:
            chain.append(str(cause.getMessage() or ""))
            cause = cause.getCause()
        text = " ".join(chain)
        if "XSDB6" in text or "Another instance of Derby" in text:
            raise SetupError(
                f"the lake's catalog ({metastore_dir(lake)}) is open in another process that reads it "
                "without the lake's catalog server (embedded Derby, e.g. a session of an older LakeRec). "
                "Let that process finish, then retry."
            ) from None
        raise SetupError(f"the lake's catalog server ({server.url}) refused the connection: "
                         f"{chain[0].splitlines()[0] if chain and chain[0] else 'no reason given'}") from None


def get_spark(cfg: Config):
    """Return the SparkSession for this configuration, creating it if needed.

    Args:
        cfg: the loaded configuration; `cfg.spark` sets master and resources, `cfg.lake`
            the lake root holding the metastore and the managed tables.

    Returns:
        A SparkSession with Delta Lake enabled and the configured database created.

    Raises:
        SetupError: Java or the Delta jars are missing, or a session bound to another lake
            is already running in this process.
    """
    from pyspark.sql import SparkSession

    sc = cfg.spark
    if sc.master is None:  # managed platform: its session, catalog and Delta are already set up
        spark = SparkSession.builder.getOrCreate()
        if spark.sparkContext.getCheckpointDir() is None:  # ALS cuts its lineage there (lakerec.retrieval.als)
            spark.sparkContext.setCheckpointDir(f"{cfg.lake.rstrip('/')}/{scratch.SCRATCH}/spark_checkpoints")
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
        return spark

    lake = cfg.lake_path
    active = SparkSession.getActiveSession()
    if active is not None:
        bound = active.conf.get("spark.lakerec.lake", None)
        if bound and bound != str(lake):
            raise SetupError(
                f"this process already has a Spark session on lake {bound}; a process works on one "
                f"lake (the metastore is per lake). Stop it (spark.stop()) before opening {lake}."
            )
        active.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
        return active

    java = java_version()
    check_lake(cfg)
    lake.mkdir(parents=True, exist_ok=True)
    scratch.sweep(lake)  # what killed sessions left behind
    local_dir = scratch.process_dir(lake)
    jar_paths = jars.delta_jars()
    server = metastore.ensure(lake) if sc.local_metastore else None
    # On the JVM's own class path too, where every thread finds them: the metastore's
    # DataNucleus loads the Derby client driver there, and the SQL endpoint's connection
    # threads (lakerec.sql_endpoint) resolve the Delta catalog there.
    class_path = driver_class_path() if server is not None else jar_paths
    cores = max(2, os.cpu_count() or 2)
    builder = (
        SparkSession.builder.master(sc.master)
        .appName(sc.app_name)
        .config("spark.jars", ",".join(str(p) for p in jar_paths))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", str(sc.shuffle_partitions))
        .config("spark.default.parallelism", str(cores))
        # A large file is read in at least four blocks per core (each at most 128 MB, and no
        # smaller than 4 MB): a 4M-impression ingest read its 856 MB skeleton file as 7 blocks
        # on 2 cores, so one core idled through every last wave; as 8 it ran 1.08x faster.
        .config("spark.sql.files.minPartitionNum", str(4 * cores))
        # Spark compiles each query's generated code (Janino), and keeps the compiled classes
        # for later queries of the same code: 100 by default, fewer than one ingest, filter
        # and impressions run needs (549 distinct on a tiny lake), so a session that runs them
        # again (a notebook, the tests) compiled everything again, and the JVM's JIT compiled
        # the new classes again. At 1,000, measured in one session on 3,000 impressions, three
        # rounds of the three jobs: 780 / 840 / 870 compilations and 70.0 / 52.6 / 49.8 s per
        # round at 100; 549 / 51 / 30 and 65.5 / 43.4 / 36.5 s at 1,000.
        .config("spark.sql.codegen.cache.maxEntries", "1000")
        .config("spark.driver.memory", sc.driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(warehouse_dir(lake)))
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "2")
        .config("spark.local.dir", str(local_dir))
        .config("spark.driver.extraJavaOptions", _java_options(lake, local_dir, class_archive.path(*java, class_path)))
        .config("spark.lakerec.lake", str(lake))
    )
    builder = builder.config("spark.driver.extraClassPath", os.pathsep.join(str(p) for p in class_path))
    if server is not None:
        builder = (
            builder.config("spark.sql.catalogImplementation", "hive")
            .config("spark.hadoop.javax.jdo.option.ConnectionURL", server.url)
            .config("spark.hadoop.javax.jdo.option.ConnectionDriverName", metastore.CLIENT_DRIVER)
            .config("spark.hadoop.datanucleus.schema.autoCreateAll", "true")
            .config("spark.hadoop.hive.metastore.schema.verification", "false")
            # Delta keeps the schema itself; without this Hive logs a spurious error on every overwrite.
            .config("spark.hadoop.hive.metastore.disallow.incompatible.col.type.changes", "false")
        )
    if sc.master.startswith("local"):
        # Local Python workers (barrier training tasks run Python) use this interpreter, the
        # one with the pinned packages, not whatever `python3` is on PATH. PySpark reads it
        # from the environment when the context starts.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Local: bind to loopback (nothing outside the machine talks to a local driver), which
        # also spares the JVM's "your hostname resolves to a loopback address" warning.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    for key, value in sc.extra.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # the JVM failed to start: say why in one line
        raise SetupError(f"Spark could not start: {str(e).splitlines()[0]}") from None
    spark.sparkContext.setLogLevel("WARN")
    # Where iterative algorithms cut their lineage (ALS, lakerec.retrieval.als): scratch, swept with the process.
    spark.sparkContext.setCheckpointDir(str(local_dir / "spark_checkpoints"))
    with metastore.locked(lake) if server is not None else contextlib.nullcontext():
        if server is not None:
            try:
                _check_catalog(spark, server, lake)
            except SetupError:
                spark.stop()
                raise
        try:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")  # Hive's first use of the catalog
        except Exception as e:
            msg = str(e)
            if "Another instance of Derby" in msg or "XSDB6" in msg or "metastore" in msg.lower():
                spark.stop()
                raise SetupError(f"the lake's catalog ({metastore_dir(lake)}) could not be opened: "
                                 f"{msg.strip().splitlines()[0]}") from None
            raise
    log.info("spark %s on %s, lake %s", spark.version, sc.master, lake)
    return spark


@contextmanager
def named_jobs(spark, name: str):
    """Name the Spark jobs run inside the block (the Spark UI and event log show it; bench/ingest_profile.py reads it)."""
    spark.sparkContext.setJobDescription(name)
    try:
        yield
    finally:
        spark.sparkContext.setJobDescription(None)
