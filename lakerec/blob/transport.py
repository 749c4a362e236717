"""Talking to Azure Blob Storage: the client, listing, moving one file, and errors in one line.

Uploads set the blob's Content-MD5 to the file's MD5, because Azure stores no MD5 of its own
for a blob uploaded in blocks. An interrupted block upload commits nothing (uncommitted
blocks are invisible; the next run finds them and sends only the rest), and downloads are
written to a `.partial` file that is renamed only once its MD5 has been checked, so neither
side is ever left with a file that looks complete but is not.

The Azure SDK is imported inside the functions that use it, so that importing `lakerec.blob`
(the jobs' `--help`, the planning tests) does not load it.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable

from lakerec.blob.auth import CONNECTION_STRING_ENV, CONNECTION_STRING_SHAPE, WHERE_KEYS, BlobAuth, redact, strip_query
from lakerec.blob.blocks import Block, BlockPlan, block_layout, plan_blocks
from lakerec.blob.local import md5_file
from lakerec.blob.plan import RemoteBlob, Transfer, human_bytes
from lakerec.errors import LakeRecError

# One logger for the whole package, so every line reads "[lakerec.blob]" as before the split.
log = logging.getLogger(__package__)

PARTIAL_SUFFIX = ".partial"

# An SDK progress hook: called with the bytes done so far (and the total, when known).
ProgressHook = Callable[[int, int | None], None]


class BlobError(LakeRecError):
    """Azure Blob Storage refused or could not be reached; the message says what to do."""


@dataclass(frozen=True)
class TransferOptions:
    """Tuning knobs; the defaults suit a laptop or a VM uploading multi-GB files."""

    workers: int = 8  # files in flight at once
    blob_concurrency: int = 4  # connections per large blob (the SDK's max_concurrency)
    retries: int = 5  # ExponentialRetry attempts per request
    retry_backoff: float = 2.0  # seconds before the first retry
    # Files larger than single_put_size go up in blocks of block_size, blob_concurrency at a
    # time; a failed request then costs one block, and an interrupted run the blocks it had
    # not staged yet, not the whole file.
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


# ---------------------------------------------------------------------------------------
# The client and its errors
# ---------------------------------------------------------------------------------------


def service_client(auth: BlobAuth, options: TransferOptions):
    """A BlobServiceClient with an explicit retry policy and a connection pool sized for the workers.

    Args:
        auth: the connection string, or the account URL to sign in to with DefaultAzureCredential.
        options: retries, block and chunk sizes, timeouts and the number of connections.

    Returns:
        An `azure.storage.blob.BlobServiceClient`; no request has been sent yet.

    Raises:
        BlobError: the connection string is malformed (the message is redacted).
    """
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
            f"it looks like {CONNECTION_STRING_SHAPE})"
        ) from None


def endpoint(service) -> str:
    """The account's blob endpoint without a query string (no SAS token), for messages."""
    return strip_query(service.primary_endpoint).rstrip("/")


def error_code(e: Exception) -> str | None:
    """The storage error code as a plain string (the SDK gives an enum or a str)."""
    code = getattr(e, "error_code", None)
    return getattr(code, "value", code)


def translate_error(e: Exception, *, action: str, auth: BlobAuth, where: str) -> BlobError:
    """One clear, redacted line for an Azure SDK error.

    Args:
        e: the SDK's exception.
        action: what was being done, e.g. "listing blobs" or "upload".
        auth: the credentials, whose secrets are removed from the message.
        where: the endpoint and container, named in the message.

    Returns:
        The error to raise: it says what went wrong and what to do about it.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    secrets = auth.secrets()
    first = redact(_first_line(e), secrets)
    code = error_code(e)
    if isinstance(e, ClientAuthenticationError) and getattr(e, "response", None) is None:
        if auth.connection_string:  # the SDK could not sign the request with the key it was given
            return BlobError(f"cannot sign requests to {where} with the {auth.credential} in {CONNECTION_STRING_ENV} "
                             f"({first}): copy it again from {WHERE_KEYS}")
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
        return BlobError(f"{action} refused by {where} ({code or e.status_code}): {_refusal_hint(auth, code)}")
    status = getattr(e, "status_code", None)
    detail = f"HTTP {status} {code}" if status else first
    return BlobError(f"{action} failed at {where}: {detail}")


def _refusal_hint(auth: BlobAuth, code: str | None) -> str:
    """What a 401/403 means for the credential that was used, and what to do about it."""
    if auth.credential == "account key":
        if code == "AuthenticationFailed":  # the signature does not verify: not this account's key
            return (f"the account key in {CONNECTION_STRING_ENV} is not a key of account {auth.account_name} (or it "
                    f"was rotated): copy key1 or key2 again from {WHERE_KEYS}")
        return (f"the account key in {CONNECTION_STRING_ENV} is wrong, or the account's firewall does not admit this "
                "machine's address (Azure portal > storage account > Networking)")
    if auth.credential == "SAS token":
        return (f"the SAS token in {CONNECTION_STRING_ENV} has expired, is not valid for this account, or lacks the "
                "permissions (read and list to download; also add, create and write to upload)")
    if auth.credential == "no credential":
        return f"{CONNECTION_STRING_ENV} has neither AccountKey= nor SharedAccessSignature=: add one"
    if code in ("AuthenticationFailed", "InvalidAuthenticationInfo"):
        return ("the Azure AD token was not accepted (it is for another tenant, or expired): sign in again with "
                "`az login --tenant TENANT`, TENANT being the storage account's")
    return ("the signed-in identity lacks the 'Storage Blob Data Contributor' role on the account (a new role "
            "assignment takes a few minutes), or the account's firewall does not admit this machine's address")


def describe_failure(t: Transfer, e: Exception, *, action: str, auth: BlobAuth, where: str) -> str:
    """One redacted line for a file that failed to move, for the list of failures at the end.

    Args:
        t: the transfer that failed.
        e: what it raised.
        action: "upload" (the local file is read) or "download" (it is written).
        auth: the credentials, whose secrets are removed from the message.
        where: the endpoint and container.

    Returns:
        The message, naming the file.
    """
    from azure.core.exceptions import AzureError

    if isinstance(e, BlobError):
        return str(e)
    if isinstance(e, OSError):
        return f"cannot {'read' if action == 'upload' else 'write'} {t.path}: {e.strerror or e}"
    if isinstance(e, AzureError):
        return f"{t.rel}: {translate_error(e, action=action, auth=auth, where=where)}"
    return f"{t.rel}: {redact(_first_line(e), auth.secrets())}"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:300]


# ---------------------------------------------------------------------------------------
# Listing
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


def list_container(container_client, prefix: str, *, auth: BlobAuth, where: str, create: bool) -> dict[str, RemoteBlob]:
    """`list_remote`, with Azure's errors translated; an upload creates a missing container.

    Args:
        container_client: the container's `ContainerClient`.
        prefix: the normalized blob prefix.
        auth: the credentials, whose secrets are removed from messages.
        where: the endpoint and container, for messages.
        create: create the container when it does not exist (and list nothing).

    Returns:
        The blobs under the prefix, by name.

    Raises:
        BlobError: the container does not exist (and `create` is false), or Azure refused or
            could not be reached.
    """
    from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

    try:
        try:
            return list_remote(container_client, prefix)
        except ResourceNotFoundError as e:
            if not create or error_code(e) != "ContainerNotFound":
                raise
            try:
                container_client.create_container()
                log.info("created container %s", where)
            except ResourceExistsError:
                pass  # created by a concurrent run
            return {}
    except AzureError as e:
        raise translate_error(e, action="listing blobs", auth=auth, where=where) from None


# ---------------------------------------------------------------------------------------
# Moving one file
# ---------------------------------------------------------------------------------------


def upload_file(container_client, t: Transfer, options: TransferOptions, hook: ProgressHook) -> int:
    """Upload one file to its blob, with the file's MD5 as the blob's Content-MD5.

    A file of up to `options.single_put_size` goes up in one request. A larger one goes up
    in blocks of `options.block_size`, `options.blob_concurrency` at a time, and becomes
    visible only when its block list is committed, so an interrupted upload leaves the old
    blob (or none), never half a file. The blocks it did stage stay on the blob, uncommitted:
    their ids name their bytes (see `lakerec.blob.blocks`), so the next run sends only the
    blocks that are not there yet.

    Args:
        container_client: the container's `ContainerClient`.
        t: the transfer; `t.md5` is the file's MD5 when planning already computed it.
        options: block size and the number of connections for this blob.
        hook: the SDK progress hook, called as bytes go up.

    Returns:
        The bytes an earlier, interrupted upload had already staged, which were not sent again.

    Raises:
        BlobError: the file changed while it was uploaded; LakeRecError: it needs more blocks
            than Azure allows; OSError: it cannot be read; azure.core.exceptions.AzureError:
            Azure refused.
    """
    from azure.storage.blob import BlobBlock, ContentSettings

    before = os.stat(t.path)
    md5 = t.md5 or md5_file(t.path)  # a streaming pass: the blob's Content-MD5 for later runs
    settings = ContentSettings(content_md5=bytearray(md5))
    if t.size <= options.single_put_size:
        with open(t.path, "rb") as fh:
            container_client.upload_blob(t.blob, fh, length=t.size, overwrite=True, content_settings=settings,
                                         progress_hook=hook)
        return 0
    blob_client = container_client.get_blob_client(t.blob)
    plan = plan_blocks(block_layout(t.size, options.block_size, md5), _uncommitted_blocks(blob_client))
    if plan.discard_staged:
        # Committing an empty block list discards all uncommitted blocks (and empties the
        # blob, which this upload replaces anyway).
        log.info("discarding uncommitted blocks of %s left by another tool", t.blob)
        blob_client.commit_block_list([])
    elif plan.bytes_staged:
        log.info("resuming %s: %d of %d blocks (%s) already staged, sending the other %d (%s)", t.blob,
                 len(plan.blocks) - len(plan.to_send), len(plan.blocks), human_bytes(plan.bytes_staged),
                 len(plan.to_send), human_bytes(plan.bytes_to_send))
    _stage_blocks(blob_client, t, plan, options, hook)
    after = os.stat(t.path)
    if {before.st_size, after.st_size} != {t.size} or after.st_mtime_ns != before.st_mtime_ns:
        # Its blocks would not match the MD5 in their ids and in the blob's Content-MD5.
        raise _changed_while_uploading(t)
    blob_client.commit_block_list([BlobBlock(b.id) for b in plan.blocks], content_settings=settings)
    return plan.bytes_staged


def _changed_while_uploading(t: Transfer) -> BlobError:
    return BlobError(f"{t.rel} changed while it was uploaded, so it was not committed: run again once it is final")


def _uncommitted_blocks(blob_client) -> dict[str, int]:
    """The blob's staged, uncommitted blocks, size by id (none when there is no blob at all)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        _committed, uncommitted = blob_client.get_block_list("uncommitted")
    except ResourceNotFoundError:
        return {}
    return {b.id: b.size for b in uncommitted}


def _stage_blocks(blob_client, t: Transfer, plan: BlockPlan, options: TransferOptions, hook: ProgressHook) -> None:
    """Stage the plan's missing blocks, `options.blob_concurrency` at a time; stop at the first failure."""
    lock = threading.Lock()
    done = [plan.bytes_staged]
    hook(done[0], t.size)

    def send(b: Block) -> None:
        with open(t.path, "rb") as fh:
            fh.seek(b.offset)
            data = fh.read(b.length)
        if len(data) != b.length:
            raise _changed_while_uploading(t)
        # validate_content: Azure checks each block's bytes against their MD5 as they arrive.
        blob_client.stage_block(b.id, data, length=b.length, validate_content=True)
        with lock:
            done[0] += b.length
            hook(done[0], t.size)

    with ThreadPoolExecutor(max_workers=options.blob_concurrency) as pool:
        futures = [pool.submit(send, b) for b in plan.to_send]
        try:
            for fut in as_completed(futures):
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()  # the blocks in flight finish; the rest are left to the next run
            raise


def download_file(container_client, t: Transfer, options: TransferOptions, hook: ProgressHook) -> None:
    """Download one blob to `t.path` through a `.partial` file, renamed once its MD5 is checked.

    Args:
        container_client: the container's `ContainerClient`.
        t: the transfer; `t.md5` and `t.etag` are the blob's as listed.
        options: the number of connections for this blob.
        hook: the SDK progress hook, called as bytes come down.

    Raises:
        BlobError: the bytes do not have the blob's MD5; OSError: the file cannot be written;
            azure.core.exceptions.AzureError: Azure refused, or the blob changed meanwhile.
    """
    from azure.core import MatchConditions

    t.path.parent.mkdir(parents=True, exist_ok=True)
    part = t.path.with_name(t.path.name + PARTIAL_SUFFIX)
    try:
        with open(part, "wb") as fh:
            # etag: a blob replaced while we read it fails instead of mixing two versions
            stream = container_client.download_blob(
                t.blob, max_concurrency=options.blob_concurrency, progress_hook=hook,
                etag=t.etag, match_condition=MatchConditions.IfNotModified if t.etag else None,
            )
            stream.readinto(fh)
        if t.md5 is not None:
            got = md5_file(part)
            if got != t.md5:
                raise BlobError(f"{t.rel}: downloaded bytes have MD5 {_b64(got)} but the blob says {_b64(t.md5)}")
        os.replace(part, t.path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()
