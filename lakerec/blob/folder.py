"""Copy a whole folder up or down: list both sides, hash what needs it, plan, move in parallel.

Each direction is the same five steps: list the two sides, hash the local files whose MD5
decides (in parallel), plan with `lakerec.blob.plan`, move the planned files in a thread
pool (`lakerec.blob.transport` moves each one), and end with a summary. One file failing
does not stop the others; the run then fails with a message naming the first, and a re-run
moves only what is still missing.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from lakerec.blob.auth import BlobAuth
from lakerec.blob.local import list_local, md5_file, stat_local
from lakerec.blob.plan import (
    LocalFile,
    Plan,
    Transfer,
    TransferSummary,
    check_container_name,
    files_to_hash_for_download,
    files_to_hash_for_upload,
    human_bytes,
    normalize_prefix,
    plan_download,
    plan_upload,
    relative_name,
    summarize,
)
from lakerec.blob.transport import (
    BlobError,
    ProgressHook,
    TransferOptions,
    describe_failure,
    download_file,
    endpoint,
    list_container,
    upload_file,
)
from lakerec.errors import LakeRecError

# One logger for the whole package, so every line reads "[lakerec.blob]" as before the split.
log = logging.getLogger(__package__)


def upload_folder(service, auth: BlobAuth, root: Path, container: str, prefix: str = "",
                  options: TransferOptions = TransferOptions()) -> TransferSummary:
    """Upload every file under `root` to `container/prefix/`, skipping blobs already identical.

    Creates the container if it does not exist.

    Args:
        service: a `BlobServiceClient` (see `transport.service_client`).
        auth: the credentials it was made with, whose secrets are kept out of messages.
        root: the local folder.
        container: the container name.
        prefix: the folder inside the container ("" for its root).
        options: workers, connections and the progress bar.

    Returns:
        What was uploaded and skipped.

    Raises:
        LakeRecError: a bad folder or prefix; BlobError: Azure refused, could not be reached, or
            some files failed (the message names the first one; a re-run resumes).
    """
    start = time.monotonic()
    check_container_name(container)
    prefix = normalize_prefix(prefix)
    local = list_local(root)
    where = f"{endpoint(service)}/{container}"
    cc = service.get_container_client(container)
    remote = list_container(cc, prefix, auth=auth, where=where, create=True)
    log.info("upload %s -> %s/%s: %d local files (%s), %d blobs under the prefix",
             root, where, prefix, len(local), human_bytes(sum(f.size for f in local)), len(remote))

    digests = _hash_all(files_to_hash_for_upload(local, remote, prefix), options, "checking")
    plan = plan_upload(local, remote, prefix, digests)
    return _carry_out("upload", plan, lambda t, hook: upload_file(cc, t, options, hook),
                      options, auth, where, start)


def download_folder(service, auth: BlobAuth, container: str, out: Path, prefix: str = "",
                    options: TransferOptions = TransferOptions()) -> TransferSummary:
    """Download every blob under `container/prefix/` into `out`, skipping local files already identical.

    Args:
        service: a `BlobServiceClient` (see `transport.service_client`).
        auth: the credentials it was made with, whose secrets are kept out of messages.
        container: the container name.
        out: the local folder, created if missing.
        prefix: the folder inside the container ("" for its root).
        options: workers, connections and the progress bar.

    Returns:
        What was downloaded and skipped.

    Raises:
        BlobError: the container does not exist, no blob is under the prefix, Azure refused or
            could not be reached, or some blobs failed (a re-run resumes).
    """
    start = time.monotonic()
    check_container_name(container)
    prefix = normalize_prefix(prefix)
    where = f"{endpoint(service)}/{container}"
    cc = service.get_container_client(container)
    remote = list_container(cc, prefix, auth=auth, where=where, create=False)
    if not remote:
        under = f"under prefix {prefix!r}" if prefix else "in it"
        raise BlobError(f"no blobs {under} in {where}: check --container and --prefix")
    if out.exists() and not out.is_dir():
        raise LakeRecError(f"--out {out} is a file, not a folder")
    rels = {relative_name(prefix, n): n for n in remote}
    local = stat_local(out, rels)
    log.info("download %s/%s -> %s: %d blobs (%s), %d already present locally",
             where, prefix, out, len(remote), human_bytes(sum(b.size for b in remote.values())), len(local))

    digests = _hash_all(files_to_hash_for_download(remote, local, prefix), options, "checking")
    plan = plan_download(remote, local, prefix, out, digests)
    return _carry_out("download", plan, lambda t, hook: download_file(cc, t, options, hook),
                      options, auth, where, start)


def _carry_out(direction: str, plan: Plan, move: Callable[[Transfer, ProgressHook], int | None],
               options: TransferOptions, auth: BlobAuth, where: str, start: float) -> TransferSummary:
    """Move the plan's files in parallel, then fail naming the failures or log the summary.

    `move` returns the bytes of the file an earlier run had already staged (upload) or None.
    """
    failures, resumed = _run_pool(plan, move, direction, options,
                                  lambda t, e: describe_failure(t, e, action=direction, auth=auth, where=where))
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise BlobError(
            f"{len(failures)} of {len(plan.transfers)} files failed to {direction}: {failures[0]}{more}; "
            "run the same command again to retry them (finished files are skipped)"
        )
    summary = summarize(direction, plan, time.monotonic() - start, resumed)
    log.info(summary.describe())
    return summary


class _Progress:
    """A thread-safe byte counter feeding one tqdm bar from many SDK progress hooks."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                         disable=not enabled, mininterval=0.5, dynamic_ncols=True)
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}

    def hook(self, key: str) -> ProgressHook:
        """A progress hook for one file: the SDK reports bytes so far, the bar wants the increase."""

        def update(current: int, _total: int | None = None) -> None:
            with self._lock:
                delta = current - self._seen.get(key, 0)
                self._seen[key] = current
                if delta > 0:
                    self._bar.update(delta)

        return update

    def add(self, n: int) -> None:
        with self._lock:
            self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _hash_all(files: list[LocalFile], options: TransferOptions, desc: str) -> dict[str, bytes]:
    """MD5 of each file by `rel`, in parallel, with a progress bar.

    Raises:
        LakeRecError: a file cannot be read.
    """
    if not files:
        return {}
    bar = _Progress(sum(f.size for f in files), desc, options.progress)
    try:
        with ThreadPoolExecutor(max_workers=options.workers) as pool:
            futures = {pool.submit(md5_file, f.path, bar.add): f for f in files}
            out = {}
            for fut in as_completed(futures):
                f = futures[fut]
                try:
                    out[f.rel] = fut.result()
                except OSError as e:
                    raise LakeRecError(f"cannot read {f.path}: {e.strerror or e}") from None
            return out
    finally:
        bar.close()


def _run_pool(plan: Plan, work: Callable[[Transfer, ProgressHook], int | None], desc: str, options: TransferOptions,
              describe_error: Callable[[Transfer, Exception], str]) -> tuple[list[str], int]:
    """Run `work` over the plan's transfers in a thread pool.

    Returns:
        One message per failure, and the sum of what `work` returned (bytes not sent again).
    """
    bar = _Progress(plan.bytes_to_transfer, desc, options.progress)
    failures: list[str] = []
    resumed = 0
    pool = ThreadPoolExecutor(max_workers=options.workers)
    try:
        futures = {pool.submit(work, t, bar.hook(t.rel)): t for t in plan.transfers}
        for fut in as_completed(futures):
            t = futures[fut]
            try:
                resumed += fut.result() or 0
                log.debug("%s %s (%s)", desc, t.rel, t.reason)
            except Exception as e:  # one file failing must not stop the others: the re-run resumes
                failures.append(describe_error(t, e))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    return failures, resumed
