"""Per-process scratch folders inside the lake, and the sweep that removes those of dead processes.

Spark's local dirs (its `spark-*` and `blockmgr-*` folders, shuffle and spill files), the
JVM's temporary files and Petastorm's materialised DataFrames all go to
`<lake>/scratch/<pid>/`. A process that ends normally removes its folder itself; one that is
killed (kill -9, an out-of-memory kill) cannot, so every new session first removes the folders
of processes that are no longer running (`sweep`), and `make clean` removes the lot.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("lakerec.scratch")

SCRATCH = "scratch"


def scratch_root(lake: Path) -> Path:
    return lake / SCRATCH


def process_dir(lake: Path) -> Path:
    """This process's scratch folder (created; removed when the process exits normally)."""
    path = scratch_root(lake) / str(os.getpid())
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped, does not); the catalog
    server and the SQL endpoint check their recorded processes with it too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): kill(0) is the answer


def sweep(lake: Path) -> list[Path]:
    """Remove the scratch folders of processes that are no longer running; return what was removed."""
    root = scratch_root(lake)
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.is_dir() and path.name.isdigit() and int(path.name) != os.getpid() and not alive(int(path.name)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed the scratch folders of %d ended process(es) under %s", len(removed), root)
    return removed
