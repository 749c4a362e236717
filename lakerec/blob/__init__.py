"""Copy a folder to and from Azure Blob Storage: parallel, resumable, verified by MD5.

Used by `python -m lakerec.jobs.upload` (raw Ali-CCP files to a container, where Spark on
Databricks/Synapse reads them as `abfss://...`) and `python -m lakerec.jobs.download`.

The modules, from the pure decisions out to the network:

- `plan`: what to send, skip and verify, from two listings; no I/O, so tested as values.
- `blocks`: how a large file is cut into blocks, their ids, and which blocks an interrupted
  upload already staged (so a re-run sends only the rest); no I/O either.
- `local`: listing and hashing the local folder.
- `auth`: which credentials to use, refusing a malformed connection string or account key
  before any request, and redacting their secrets from messages.
- `transport`: the Azure SDK client, listing the container, moving one file (the block
  upload lives here), and each SDK error as one clear line.
- `folder`: `upload_folder` and `download_folder`, which tie the others together.

The names below are the package's interface; import them from `lakerec.blob`.
"""

from lakerec.blob.auth import ACCOUNT_URL_ENV, CONNECTION_STRING_ENV, BlobAuth, redact, resolve_auth, strip_query
from lakerec.blob.blocks import Block, BlockPlan, block_id, block_layout, plan_blocks
from lakerec.blob.folder import download_folder, upload_folder
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
from lakerec.blob.transport import (
    PARTIAL_SUFFIX,
    BlobError,
    TransferOptions,
    download_file,
    endpoint,
    list_remote,
    service_client,
    translate_error,
    upload_file,
)

__all__ = [
    "ACCOUNT_URL_ENV",
    "CONNECTION_STRING_ENV",
    "PARTIAL_SUFFIX",
    "BlobAuth",
    "BlobError",
    "Block",
    "BlockPlan",
    "LocalFile",
    "Plan",
    "RemoteBlob",
    "Transfer",
    "TransferOptions",
    "TransferSummary",
    "blob_name",
    "block_id",
    "block_layout",
    "check_container_name",
    "download_file",
    "download_folder",
    "endpoint",
    "files_to_hash_for_download",
    "files_to_hash_for_upload",
    "human_bytes",
    "list_local",
    "list_remote",
    "local_path",
    "md5_file",
    "normalize_prefix",
    "plan_blocks",
    "plan_download",
    "plan_upload",
    "redact",
    "relative_name",
    "resolve_auth",
    "service_client",
    "stat_local",
    "strip_query",
    "summarize",
    "translate_error",
    "upload_file",
    "upload_folder",
]
