"""The local side of a transfer: list the files under a folder and hash them.

These read the disk but never the network; `lakerec.blob.plan` decides from what they return.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

from lakerec.blob.plan import LocalFile, local_path
from lakerec.errors import LakeRecError

_HASH_CHUNK = 4 * 1024 * 1024


def md5_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> bytes:
    """MD5 of a file, read in 4 MiB chunks (a 10 GB raw file never sits in memory).

    Args:
        path: the file to read.
        on_bytes: called with the size of each chunk read, to feed a progress bar.

    Returns:
        The 16-byte digest, comparable with a blob's Content-MD5.
    """
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return h.digest()


def list_local(root: Path) -> list[LocalFile]:
    """Every regular file under root (recursively), with POSIX relative paths.

    Raises:
        LakeRecError: the folder does not exist, is not a folder, or holds no files.
    """
    if not root.exists():
        raise LakeRecError(f"local folder {root} does not exist: pass --raw DIR with the files to upload")
    if not root.is_dir():
        raise LakeRecError(f"{root} is not a folder: pass --raw DIR with the files to upload")
    files = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if p.is_file():
                files.append(LocalFile(p.relative_to(root).as_posix(), p, p.stat().st_size))
    if not files:
        raise LakeRecError(f"local folder {root} holds no files: nothing to upload")
    return sorted(files, key=lambda f: f.rel)


def stat_local(out: Path, rels: Iterable[str]) -> dict[str, LocalFile]:
    """The local files already present at the given relative paths under `out`.

    Raises:
        LakeRecError: a relative path would escape `out` (see `local_path`).
    """
    found = {}
    for rel in rels:
        p = local_path(out, rel)
        if p.is_file():
            found[rel] = LocalFile(rel, p, p.stat().st_size)
    return found
