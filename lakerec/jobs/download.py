"""Download a folder of blobs from Azure Blob Storage (parallel, resumable, MD5-verified).

    export AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...'
    python -m lakerec.jobs.download --container aliccp --prefix raw --out data/raw

A local file whose size and MD5 already match its blob is skipped, so re-running after an
interruption downloads only what is missing or incomplete. Each blob is written to
`NAME.partial` and renamed once its MD5 is checked against the blob's Content-MD5.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from lakerec.jobs.upload import add_transfer_flags, options_from_args
from lakerec import blob, cli
from lakerec.errors import LakeRecError


def run(
    container: str,
    out: str | os.PathLike,
    prefix: str = "",
    *,
    auth: blob.BlobAuth,
    options: blob.TransferOptions = blob.TransferOptions(),
) -> blob.TransferSummary:
    """Download every blob under `container/prefix/` into `out`; return what was downloaded and skipped."""
    service = blob.service_client(auth, options)
    return blob.download_folder(service, auth, container, Path(out), prefix, options)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    p = cli.parser("download", "Download a folder of blobs from Azure Blob Storage.", lake="none")
    p.add_argument("--out", default=None, help="local folder to write into (default: `raw` of the config)")
    add_transfer_flags(p)
    args = p.parse_args(argv)

    def body():
        out = args.out or cli.config_from_args(args).raw
        if not out:
            raise LakeRecError("no folder to download into: pass --out DIR")
        if "://" in out:
            raise LakeRecError(f"--out {out} is not a local folder: pass --out DIR")
        auth = blob.resolve_auth(args.account_url, os.environ if environ is None else environ)
        run(args.container, out, args.prefix, auth=auth, options=options_from_args(args))

    cli.run_main("download", body)


if __name__ == "__main__":
    main()
