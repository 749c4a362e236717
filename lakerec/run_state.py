"""Checkpoint folders and the resume state of a training run, shared by every model stage.

A run's checkpoints live in `<root>/<run name>`, next to a state file (STATE_FILE) that
records the MLflow run, the database and the settings, so `--resume` continues the same
run with the same settings. The retrieval stage keeps its runs in `checkpoint_root(cfg)`,
the ranker in a folder of its own below it (lakerec.ranking.train), so neither resumes the
other's runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lakerec.config import Config
from lakerec.errors import LakeRecError

STATE_FILE = "lakerec_run.json"


def checkpoint_root(cfg: Config) -> Path:
    """The folder holding one checkpoint folder per run: `train.checkpoint_dir` or <lake>/checkpoints."""
    return Path(cfg.train.checkpoint_dir) if cfg.train.checkpoint_dir else cfg.lake_path / "checkpoints"


def find_resumable(root: Path, database: str, run_name: str | None) -> tuple[str, dict]:
    """(run name, state) of the named run, or of the newest unfinished run of the database.

    Raises:
        LakeRecError: there is no such run.
    """
    if run_name:
        state_path = root / run_name / STATE_FILE
        if not state_path.is_file():
            raise LakeRecError(f"--resume: no run named {run_name!r} under {root}")
        return run_name, json.loads(state_path.read_text())
    candidates = []
    for p in root.glob(f"*/{STATE_FILE}") if root.is_dir() else []:
        state = json.loads(p.read_text())
        if not state.get("finished") and state.get("database") == database:
            candidates.append((p.stat().st_mtime, p.parent.name, state))
    if not candidates:
        raise LakeRecError(f"--resume: no unfinished run for database {database} under {root}; start one without --resume")
    _, name, state = max(candidates, key=lambda c: c[0])
    return name, state


def write_state(ckpt_dir: Path, state: dict) -> None:
    """Write (replace) the run's state file."""
    (ckpt_dir / STATE_FILE).write_text(json.dumps(state, indent=1))


def finish(ckpt_dir: Path, state: dict, *, keep_checkpoints: bool) -> None:
    """Mark the run finished; drop its checkpoints unless kept (its model is exported: nothing resumes it)."""
    state["finished"] = True
    write_state(ckpt_dir, state)
    if keep_checkpoints:
        return
    for path in ckpt_dir.iterdir():
        if path.name != STATE_FILE:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
