"""Reading and writing the small JSON documents under oracle/."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: Path) -> dict:
    """The document at path, or {} when there is none yet (or it cannot be read)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
