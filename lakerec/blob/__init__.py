"""Copy a folder to and from Azure Blob Storage: parallel, resumable, verified by MD5.

Used by `python -m jobs.upload` (raw Ali-CCP files to a container, where Spark on
Databricks/Synapse reads them as `abfss://...`) and `python -m jobs.download`.

A transfer is planned first, from two listings, by the pure functions `plan_upload` and
`plan_download`: a file is skipped when the other side already has the same size and the
same MD5, so re-running an interrupted transfer moves only what is missing or incomplete.
Uploads set the blob's Content-MD5 to the file's MD5 (computed while streaming the file),
because Azure stores no MD5 of its own for a blob uploaded in blocks. An interrupted block
upload commits nothing (uncommitted blocks are invisible), and downloads are written to a
`.partial` file that is renamed only once its MD5 has been checked, so neither side is ever
left with a file that looks complete but is not.

Authentication: the connection string in `AZURE_STORAGE_CONNECTION_STRING`, or an account
URL (`--account-url` or `AZURE_STORAGE_ACCOUNT_URL`) with `DefaultAzureCredential` (az login,
managed identity, workload identity, service principal in AZURE_CLIENT_* variables). Secrets
are never logged: error messages pass through `redact` before they are raised.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lakerec.blob.auth import ACCOUNT_URL_ENV, CONNECTION_STRING_ENV, BlobAuth, redact, resolve_auth, strip_query
from lakerec.blob.local import list_local, md5_file, stat_local
from lakerec.blob.plan import (
    LocalFile,
    Plan,
    RemoteBlob,
    Transfer,
    TransferSummary,
    blob_name,
    check_container_name,
    files_to_hash_for_download,
    files_to_hash_for_upload,
    human_bytes,
    local_path,
    normalize_prefix,
    plan_download,
    plan_upload,
    relative_name,
    summarize,
)
from lakerec.errors import LakeRecError

log = logging.getLogger("lakerec.blob")

PARTIAL_SUFFIX = ".partial"


class BlobError(LakeRecError):
    """Azure Blob Storage refused or could not be reached; the message says what to do."""


# ---------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferOptions:
    """Tuning knobs; the defaults suit a laptop or a VM uploading multi-GB files."""

    workers: int = 8  # files in flight at once
    blob_concurrency: int = 4  # connections per large blob (the SDK's max_concurrency)
    retries: int = 5  # ExponentialRetry attempts per request
    retry_backoff: float = 2.0  # seconds before the first retry
    # Files larger than single_put_size go up in blocks of block_size, blob_concurrency at a
    # time; a failed request then costs one block, not the whole file.
    block_size: int = 8 * 1024 * 1024
    single_put_size: int = 8 * 1024 * 1024
    chunk_size: int = 8 * 1024 * 1024  # download chunk size
    single_get_size: int = 8 * 1024 * 1024
    connection_timeout: float = 20.0
    read_timeout: float = 120.0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("workers", "blob_concurrency", "block_size", "single_put_size", "chunk_size", "single_get_size"):
            if getattr(self, name) < 1:
                raise LakeRecError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.block_size > 4000 * 1024 * 1024:
            raise LakeRecError("block size must be at most 4000 MiB (Azure's limit for one block)")
        if self.retries < 0:
            raise LakeRecError(f"retries must be 0 or more, got {self.retries}")


def service_client(auth: BlobAuth, options: TransferOptions):
    """A BlobServiceClient with an explicit retry policy and a connection pool sized for the workers."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobServiceClient, ExponentialRetry

    retry = ExponentialRetry(
        initial_backoff=options.retry_backoff,
        increment_base=2,
        retry_total=options.retries,
        random_jitter_range=1,
    )
    session = requests.Session()
    pool = max(10, options.workers * options.blob_concurrency)
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    kwargs = dict(
        retry_policy=retry,
        transport=RequestsTransport(session=session, session_owner=True),
        max_single_put_size=options.single_put_size,
        max_block_size=options.block_size,
        max_single_get_size=options.single_get_size,
        max_chunk_get_size=options.chunk_size,
        connection_timeout=options.connection_timeout,
        read_timeout=options.read_timeout,
    )
    try:
        if auth.connection_string:
            return BlobServiceClient.from_connection_string(auth.connection_string, **kwargs)
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(auth.account_url, credential=DefaultAzureCredential(), **kwargs)
    except ValueError as e:
        raise BlobError(
            f"cannot use the storage credentials: {redact(str(e), auth.secrets())} (check {CONNECTION_STRING_ENV}: "
            "it looks like DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net)"
        ) from None


def endpoint(service) -> str:
    return strip_query(service.primary_endpoint).rstrip("/")


def _code(e: Exception) -> str | None:
    """The storage error code as a plain string (the SDK gives an enum or a str)."""
    code = getattr(e, "error_code", None)
    return getattr(code, "value", code)


def translate_error(e: Exception, *, action: str, auth: BlobAuth, where: str) -> BlobError:
    """One clear, redacted line for an Azure SDK error."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    secrets = auth.secrets()
    first = redact(_first_line(e), secrets)
    code = _code(e)
    if isinstance(e, ClientAuthenticationError) and getattr(e, "response", None) is None:
        return BlobError(
            f"no Azure credential could sign in for {where} ({first}): run `az login`, use a managed identity, "
            f"or set {CONNECTION_STRING_ENV} instead"
        )
    if isinstance(e, (ServiceRequestError, ServiceResponseError)):
        return BlobError(
            f"cannot reach Azure Blob Storage at {where} ({first}): check the account name or BlobEndpoint "
            "and the network, then run again (completed files are skipped)"
        )
    if isinstance(e, ResourceNotFoundError) and code == "ContainerNotFound":
        return BlobError(f"container not found at {where}: check --container (and the account)")
    if isinstance(e, HttpResponseError) and e.status_code in (401, 403):
        return BlobError(
            f"{action} refused by {where} ({code or e.status_code}): check the account key in "
            f"{CONNECTION_STRING_ENV}, or give the signed-in identity the 'Storage Blob Data Contributor' role"
        )
    status = getattr(e, "status_code", None)
    detail = f"HTTP {status} {code}" if status else first
    return BlobError(f"{action} failed at {where}: {detail}")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:300]


# ---------------------------------------------------------------------------------------
# Remote side
# ---------------------------------------------------------------------------------------


def list_remote(container_client, prefix: str) -> dict[str, RemoteBlob]:
    """Blobs under `prefix/` (or the whole container), by name; folder markers are left out."""
    starts = f"{prefix}/" if prefix else None
    out = {}
    for b in container_client.list_blobs(name_starts_with=starts, include=["metadata"]):
        if (b.metadata or {}).get("hdi_isfolder") == "true" or b.name.endswith("/"):
            continue  # directory placeholders of hierarchical-namespace (ADLS Gen2) accounts
        md5 = b.content_settings.content_md5 if b.content_settings else None
        out[b.name] = RemoteBlob(b.name, int(b.size), bytes(md5) if md5 else None, b.etag)
    return out


class _Progress:
    """A thread-safe byte counter feeding one tqdm bar from many SDK progress hooks."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                         disable=not enabled, mininterval=0.5, dynamic_ncols=True)
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}

    def hook(self, key: str) -> Callable[[int, int | None], None]:
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
    """MD5 of each file, in parallel, with a progress bar."""
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


def _run_pool(plan: Plan, work: Callable[[Transfer, Callable], None], desc: str, options: TransferOptions,
              describe_error: Callable[[Transfer, Exception], str]) -> list[str]:
    """Run `work` over the plan's transfers in a thread pool; return one message per failure."""
    bar = _Progress(plan.bytes_to_transfer, desc, options.progress)
    failures: list[str] = []
    pool = ThreadPoolExecutor(max_workers=options.workers)
    try:
        futures = {pool.submit(work, t, bar.hook(t.rel)): t for t in plan.transfers}
        for fut in as_completed(futures):
            t = futures[fut]
            try:
                fut.result()
                log.debug("%s %s (%s)", desc, t.rel, t.reason)
            except Exception as e:  # one file failing must not stop the others: the re-run resumes
                failures.append(describe_error(t, e))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    return failures


def _fail(direction: str, failures: list[str], total: int) -> BlobError:
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return BlobError(
        f"{len(failures)} of {total} files failed to {direction}: {failures[0]}{more}; "
        "run the same command again to retry them (finished files are skipped)"
    )


def upload_folder(service, auth: BlobAuth, root: Path, container: str, prefix: str = "",
                  options: TransferOptions = TransferOptions()) -> TransferSummary:
    """Upload every file under `root` to `container/prefix/`, skipping blobs already identical.

    Creates the container if it does not exist.

    Raises:
        LakeRecError: a bad folder or prefix; BlobError: Azure refused, could not be reached, or
            some files failed (the message names the first one; a re-run resumes).
    """
    from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
    from azure.storage.blob import ContentSettings

    start = time.monotonic()
    check_container_name(container)
    prefix = normalize_prefix(prefix)
    local = list_local(root)
    where = f"{endpoint(service)}/{container}"
    cc = service.get_container_client(container)
    try:
        try:
            remote = list_remote(cc, prefix)
        except ResourceNotFoundError as e:
            if _code(e) != "ContainerNotFound":
                raise
            try:
                cc.create_container()
                log.info("created container %s", where)
            except ResourceExistsError:
                pass  # created by a concurrent run
            remote = {}
    except AzureError as e:
        raise translate_error(e, action="listing blobs", auth=auth, where=where) from None
    log.info("upload %s -> %s/%s: %d local files (%s), %d blobs under the prefix",
             root, where, prefix, len(local), human_bytes(sum(f.size for f in local)), len(remote))

    digests = _hash_all(files_to_hash_for_upload(local, remote, prefix), options, "checking")
    plan = plan_upload(local, remote, prefix, digests)

    def put(t: Transfer, md5: bytes, hook: Callable) -> None:
        with open(t.path, "rb") as fh:
            cc.upload_blob(
                t.blob, fh, length=t.size, overwrite=True,
                content_settings=ContentSettings(content_md5=bytearray(md5)),
                max_concurrency=options.blob_concurrency, progress_hook=hook,
            )

    def work(t: Transfer, hook: Callable) -> None:
        md5 = t.md5 or md5_file(t.path)  # a streaming pass: the blob's Content-MD5 for later runs
        try:
            put(t, md5, hook)
        except HttpResponseError as e:
            if _code(e) != "InvalidBlobOrBlock":
                raise
            # Uncommitted blocks of another tool, with block ids of another length, block ours.
            # Committing an empty block list discards them; the upload then starts afresh.
            log.info("discarding uncommitted blocks of %s left by an earlier upload", t.blob)
            cc.get_blob_client(t.blob).commit_block_list([])
            put(t, md5, hook)

    def describe_error(t: Transfer, e: Exception) -> str:
        if isinstance(e, OSError):
            return f"cannot read {t.path}: {e.strerror or e}"
        if isinstance(e, AzureError):
            return f"{t.rel}: {translate_error(e, action='upload', auth=auth, where=where)}"
        return f"{t.rel}: {redact(_first_line(e), auth.secrets())}"

    failures = _run_pool(plan, work, "upload", options, describe_error)
    if failures:
        raise _fail("upload", failures, len(plan.transfers))
    summary = summarize("upload", plan, time.monotonic() - start)
    log.info(summary.describe())
    return summary


def download_folder(service, auth: BlobAuth, container: str, out: Path, prefix: str = "",
                    options: TransferOptions = TransferOptions()) -> TransferSummary:
    """Download every blob under `container/prefix/` into `out`, skipping local files already identical.

    Raises:
        BlobError: the container does not exist, no blob is under the prefix, Azure refused or
            could not be reached, or some blobs failed (a re-run resumes).
    """
    from azure.core import MatchConditions
    from azure.core.exceptions import AzureError

    start = time.monotonic()
    check_container_name(container)
    prefix = normalize_prefix(prefix)
    where = f"{endpoint(service)}/{container}"
    cc = service.get_container_client(container)
    try:
        remote = list_remote(cc, prefix)
    except AzureError as e:
        raise translate_error(e, action="listing blobs", auth=auth, where=where) from None
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

    def work(t: Transfer, hook: Callable) -> None:
        t.path.parent.mkdir(parents=True, exist_ok=True)
        part = t.path.with_name(t.path.name + PARTIAL_SUFFIX)
        try:
            with open(part, "wb") as fh:
                # etag: a blob replaced while we read it fails instead of mixing two versions
                stream = cc.download_blob(t.blob, max_concurrency=options.blob_concurrency, progress_hook=hook,
                                          etag=t.etag, match_condition=MatchConditions.IfNotModified if t.etag else None)
                stream.readinto(fh)
            if t.md5 is not None:
                got = md5_file(part)
                if got != t.md5:
                    raise BlobError(
                        f"{t.rel}: downloaded bytes have MD5 {_b64(got)} but the blob says {_b64(t.md5)}"
                    )
            os.replace(part, t.path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def describe_error(t: Transfer, e: Exception) -> str:
        if isinstance(e, BlobError):
            return str(e)
        if isinstance(e, OSError):
            return f"cannot write {t.path}: {e.strerror or e}"
        if isinstance(e, AzureError):
            return f"{t.rel}: {translate_error(e, action='download', auth=auth, where=where)}"
        return f"{t.rel}: {redact(_first_line(e), auth.secrets())}"

    failures = _run_pool(plan, work, "download", options, describe_error)
    if failures:
        raise _fail("download", failures, len(plan.transfers))
    summary = summarize("download", plan, time.monotonic() - start)
    log.info(summary.describe())
    return summary


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()
