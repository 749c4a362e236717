"""What a transfer moves, skips and verifies, decided from two listings without any I/O.

A file is skipped when the other side already has the same size and the same MD5, so
re-running an interrupted transfer moves only what is missing or incomplete. Everything
here is pure: the listings come in as values (see `lakerec.blob.local` and
`lakerec.blob.transport.list_remote`), so the decisions are tested without disk or Azure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

from lakerec.errors import LakeRecError

_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


# ---------------------------------------------------------------------------------------
# Listings, plans and summaries
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    """A file under the local root; `rel` is its POSIX path relative to the root."""

    rel: str
    path: Path
    size: int


@dataclass(frozen=True)
class RemoteBlob:
    """A blob under the prefix; `md5` is its Content-MD5 (None when the blob has none)."""

    name: str
    size: int
    md5: bytes | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Transfer:
    """One file to move: local path, blob name, size and why it has to move."""

    rel: str
    path: Path
    blob: str
    size: int
    reason: str  # new | size differs | content differs | no MD5 to compare
    md5: bytes | None = None  # upload: the local MD5 when already computed; download: the blob's
    etag: str | None = None


@dataclass(frozen=True)
class Plan:
    """The files a run moves and the ones it skips as already identical on the other side."""

    transfers: tuple[Transfer, ...]
    skipped: tuple[Transfer, ...]  # reason "up to date"

    @property
    def bytes_to_transfer(self) -> int:
        return sum(t.size for t in self.transfers)

    @property
    def bytes_skipped(self) -> int:
        return sum(t.size for t in self.skipped)


@dataclass(frozen=True)
class TransferSummary:
    """What a run did; `describe()` is the line printed at the end."""

    direction: str  # upload | download
    transferred: int
    skipped: int
    bytes_transferred: int
    bytes_skipped: int
    seconds: float
    reasons: Mapping[str, int] = field(default_factory=dict)
    # Bytes of the transferred files an interrupted earlier run had already staged as blocks,
    # so this run did not send them again (part of bytes_transferred).
    bytes_resumed: int = 0

    def describe(self) -> str:
        """The closing line a person reads: files and bytes moved and skipped, why, and how fast."""
        verb = "uploaded" if self.direction == "upload" else "downloaded"
        sent = self.bytes_transferred - self.bytes_resumed
        rate = sent / self.seconds if self.seconds > 0 else 0.0
        why = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items()))
        resumed = f", {human_bytes(self.bytes_resumed)} of it staged by an earlier run" if self.bytes_resumed else ""
        return (
            f"{self.direction}: {self.transferred} files {verb} ({human_bytes(self.bytes_transferred)}{resumed}"
            f"{'; ' + why if why else ''}), {self.skipped} skipped as up to date "
            f"({human_bytes(self.bytes_skipped)}), in {self.seconds:.1f}s"
            + (f" ({human_bytes(rate)}/s)" if sent else "")
        )


def summarize(direction: str, plan: Plan, seconds: float, bytes_resumed: int = 0) -> TransferSummary:
    """The summary of a run that carried out `plan` in `seconds`.

    Args:
        direction: "upload" or "download".
        plan: the plan that was carried out in full.
        seconds: how long the run took, listing and hashing included.
        bytes_resumed: bytes an earlier, interrupted run had already staged, not sent again.

    Returns:
        The counts and bytes of the plan, with the number of transfers for each reason.
    """
    reasons: dict[str, int] = {}
    for t in plan.transfers:
        reasons[t.reason] = reasons.get(t.reason, 0) + 1
    return TransferSummary(direction, len(plan.transfers), len(plan.skipped), plan.bytes_to_transfer,
                           plan.bytes_skipped, seconds, reasons, bytes_resumed)


def human_bytes(n: float) -> str:
    """A byte count for people: `512 B`, `2.0 KiB`, `6.5 MiB`, `1.2 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


# ---------------------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------------------


def normalize_prefix(prefix: str | None) -> str:
    """`/raw/v1/` -> `raw/v1`; empty means the container's root.

    Raises:
        LakeRecError: the prefix has a '.', '..' or '//' part.
    """
    p = (prefix or "").strip().strip("/")
    if "//" in p or any(part in (".", "..") for part in p.split("/") if p):
        raise LakeRecError(f"--prefix {prefix!r}: use a plain path such as raw/aliccp (no '.', '..' or '//')")
    return p


def blob_name(prefix: str, rel: str) -> str:
    """The blob name of a file's relative path under the (normalized) prefix."""
    return f"{prefix}/{rel}" if prefix else rel


def relative_name(prefix: str, name: str) -> str:
    """The blob's path below the prefix (the inverse of `blob_name`)."""
    return name[len(prefix) + 1 :] if prefix else name


def check_container_name(name: str) -> str:
    """Return `name` if Azure accepts it as a container name.

    Raises:
        LakeRecError: it is not 3-63 lowercase letters, digits and single inner hyphens.
    """
    if not _CONTAINER_RE.match(name or ""):
        raise LakeRecError(
            f"container name {name!r} is not valid: use 3-63 lowercase letters, digits and single "
            "hyphens, starting and ending with a letter or digit (e.g. aliccp-raw)"
        )
    return name


def local_path(out: Path, rel: str) -> Path:
    """Where a blob's relative name lands under `out`; refuses names that would escape it.

    Raises:
        LakeRecError: the name is absolute or has a '..', '.' or backslash part.
    """
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or any(p in ("..", ".") for p in parts) or "\\" in rel:
        raise LakeRecError(f"blob name {rel!r} cannot be a local path under {out} (it has '..', '.' or '\\')")
    return out.joinpath(*parts)


# ---------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------


def files_to_hash_for_upload(local: Iterable[LocalFile], remote: Mapping[str, RemoteBlob], prefix: str) -> list[LocalFile]:
    """Local files whose MD5 decides whether they are uploaded: same size as a blob that has an MD5."""
    out = []
    for f in local:
        b = remote.get(blob_name(prefix, f.rel))
        if b is not None and b.size == f.size and b.md5 is not None:
            out.append(f)
    return out


def plan_upload(
    local: Iterable[LocalFile],
    remote: Mapping[str, RemoteBlob],
    prefix: str,
    local_md5: Mapping[str, bytes],
) -> Plan:
    """Decide which local files to upload.

    Args:
        local: the files under the local root.
        remote: blobs under the prefix, by full blob name.
        prefix: the normalized blob prefix (see `normalize_prefix`).
        local_md5: MD5 digests by `rel`, needed only for `files_to_hash_for_upload`.

    Returns:
        The plan: a file is skipped only when a blob of the same size and MD5 exists.
    """
    transfers, skipped = [], []
    for f in sorted(local, key=lambda f: f.rel):
        name = blob_name(prefix, f.rel)
        b = remote.get(name)
        digest = local_md5.get(f.rel)
        if b is None:
            reason = "new"
        elif b.size != f.size:
            reason = "size differs"
        elif b.md5 is None or digest is None:
            reason = "no MD5 to compare"
        elif b.md5 != digest:
            reason = "content differs"
        else:
            skipped.append(Transfer(f.rel, f.path, name, f.size, "up to date", digest))
            continue
        transfers.append(Transfer(f.rel, f.path, name, f.size, reason, digest))
    return Plan(tuple(transfers), tuple(skipped))


def files_to_hash_for_download(remote: Mapping[str, RemoteBlob], local: Mapping[str, LocalFile], prefix: str) -> list[LocalFile]:
    """Local files whose MD5 decides whether their blob is downloaded: same size as a blob with an MD5."""
    out = []
    for name, b in remote.items():
        f = local.get(relative_name(prefix, name))
        if f is not None and f.size == b.size and b.md5 is not None:
            out.append(f)
    return out


def plan_download(
    remote: Mapping[str, RemoteBlob],
    local: Mapping[str, LocalFile],
    prefix: str,
    out: Path,
    local_md5: Mapping[str, bytes],
) -> Plan:
    """Decide which blobs to download.

    Args:
        remote: blobs under the prefix, by full blob name.
        local: the files already at the blobs' local paths, by `rel` (absent: not there).
        prefix: the normalized blob prefix.
        out: the local root the blobs are written under.
        local_md5: MD5 digests by `rel` of local files of the same size as their blob.

    Returns:
        The plan: a blob is skipped only when the local file has its size and its MD5.

    Raises:
        LakeRecError: a blob's name cannot be a path under `out` (see `local_path`).
    """
    transfers, skipped = [], []
    for name in sorted(remote):
        b = remote[name]
        rel = relative_name(prefix, name)
        path = local_path(out, rel)
        f = local.get(rel)
        if f is None:
            reason = "new"
        elif f.size != b.size:
            reason = "size differs"
        elif b.md5 is None or rel not in local_md5:
            reason = "no MD5 to compare"
        elif local_md5[rel] != b.md5:
            reason = "content differs"
        else:
            skipped.append(Transfer(rel, path, name, b.size, "up to date", b.md5, b.etag))
            continue
        transfers.append(Transfer(rel, path, name, b.size, reason, b.md5, b.etag))
    return Plan(tuple(transfers), tuple(skipped))
