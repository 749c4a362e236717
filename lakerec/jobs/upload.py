"""Upload the raw Ali-CCP files to Azure Blob Storage (parallel, resumable, MD5-verified).

    export AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...'
    python -m lakerec.jobs.upload --raw data/raw --container aliccp --prefix raw

or, signed in with `az login` / a managed identity (role: Storage Blob Data Contributor):

    python -m lakerec.jobs.upload --raw data/raw --container aliccp --prefix raw \\
        --account-url https://ACCOUNT.blob.core.windows.net

A blob whose size and MD5 already match its local file is skipped, so re-running after an
interruption uploads only what is missing; a large file cut off part way sends only the
blocks it had not staged yet. The container is created if it does not exist.
Spark then reads the files as abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Mapping

from lakerec import blob, cli
from lakerec.errors import LakeRecError


def run(
    raw: str | os.PathLike,
    container: str,
    prefix: str = "",
    *,
    auth: blob.BlobAuth,
    options: blob.TransferOptions = blob.TransferOptions(),
) -> blob.TransferSummary:
    """Upload every file under `raw` to `container/prefix/`; return what was uploaded and skipped."""
    service = blob.service_client(auth, options)
    return blob.upload_folder(service, auth, Path(raw), container, prefix, options)


def add_transfer_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by lakerec.jobs.upload and lakerec.jobs.download."""
    p.add_argument("--container", required=True, help="blob container (created on upload if missing)")
    p.add_argument("--prefix", default="", help="folder inside the container, e.g. raw/aliccp (default: its root)")
    p.add_argument("--account-url", default=None,
                   help=f"https://ACCOUNT.blob.core.windows.net, signed in with DefaultAzureCredential "
                        f"(default: ${blob.ACCOUNT_URL_ENV}; ${blob.CONNECTION_STRING_ENV} is used when neither is set)")
    p.add_argument("--workers", type=int, default=8, help="files transferred in parallel (default 8)")
    p.add_argument("--blob-concurrency", type=int, default=4,
                   help="parallel connections per large blob (default 4)")
    p.add_argument("--retries", type=int, default=5, help="retries per request, exponential back-off (default 5)")
    p.add_argument("--block-size-mb", type=int, default=8,
                   help="files larger than this move in blocks (chunks) of this size, in MiB (default 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> blob.TransferOptions:
    block = args.block_size_mb * 1024 * 1024
    return blob.TransferOptions(workers=args.workers, blob_concurrency=args.blob_concurrency,
                                retries=args.retries, block_size=block, single_put_size=block,
                                chunk_size=block, single_get_size=block, progress=not args.no_progress)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    p = cli.parser("upload", "Upload a folder (the raw Ali-CCP files) to Azure Blob Storage.", lake="none")
    p.add_argument("--raw", default=None, help="local folder to upload (default: `raw` of the config)")
    add_transfer_flags(p)
    args = p.parse_args(argv)

    def body():
        raw = args.raw or cli.config_from_args(args).raw
        if not raw:
            raise LakeRecError("no folder to upload: pass --raw DIR")
        if "://" in raw:
            raise LakeRecError(f"--raw {raw} is not a local folder: pass --raw DIR with the files to upload")
        auth = blob.resolve_auth(args.account_url, os.environ if environ is None else environ)
        run(raw, args.container, args.prefix, auth=auth, options=options_from_args(args))

    cli.run_main("upload", body)


if __name__ == "__main__":
    main()
