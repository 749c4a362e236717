"""Azure Blob upload/download against a real Azurite: round trips, resumption, errors, secrets."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from lakerec.jobs import download, upload
from lakerec import blob
from lakerec.blob import BlobAuth, BlobError, LocalFile, RemoteBlob, TransferOptions
from lakerec.errors import LakeRecError
from tests.azurite import ACCOUNT_KEY, azurite, container, free_port  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024

# Small blocks and chunks so a few-MiB file really goes up in blocks and comes down in
# parallel chunks; no retries so error tests fail at once.
SMALL = TransferOptions(workers=3, blob_concurrency=3, retries=0, block_size=MiB, single_put_size=MiB,
                        chunk_size=MiB, single_get_size=MiB, progress=False)


# A well-formed account key (64 bytes) that is not the account's.
WRONG_KEY = base64.b64encode(b"not the key of devstoreaccount1!" * 2).decode()


def md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def write(root: Path, rel: str, data: bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def make_tree(root: Path) -> dict[str, bytes]:
    """Five files in nested folders, one of 6.5 MiB (7 blocks of 1 MiB)."""
    files = {
        "sample_skeleton_train.csv": b"1,0,0,abc,3,205\x01301\x031.0\n" * 1000,
        "common_features_train.csv": b"abc,2,101\x01201\x031.0\n" * 500,
        "oracle/truth.json": b'{"planted": [1, 2, 3]}',
        "oracle/deep/empty.txt": b"",
        "big/blob.bin": os.urandom(6 * MiB + 512 * 1024),
    }
    for rel, data in files.items():
        write(root, rel, data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def auth(azurite) -> BlobAuth:  # noqa: F811
    return BlobAuth(connection_string=azurite.connection_string)


@pytest.fixture()
def service(azurite) -> BlobServiceClient:  # noqa: F811
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def blobs(service, container_name: str) -> dict[str, bytes]:
    cc = service.get_container_client(container_name)
    return {b.name: cc.download_blob(b.name).readall() for b in cc.list_blobs()}


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# Pure planning
# --------------------------------------------------------------------------------------


def test_plan_upload_transfers_only_what_differs(tmp_path):
    local = [LocalFile(r, tmp_path / r, s) for r, s in
             [("a.csv", 10), ("same.csv", 20), ("longer.csv", 31), ("edited.csv", 40), ("nomd5.csv", 50)]]
    remote = {
        "p/same.csv": RemoteBlob("p/same.csv", 20, b"S" * 16),
        "p/longer.csv": RemoteBlob("p/longer.csv", 30, b"L" * 16),
        "p/edited.csv": RemoteBlob("p/edited.csv", 40, b"old-md5-16-bytes"),
        "p/nomd5.csv": RemoteBlob("p/nomd5.csv", 50, None),
        "p/only-remote.csv": RemoteBlob("p/only-remote.csv", 5, b"R" * 16),
    }
    need = blob.files_to_hash_for_upload(local, remote, "p")
    assert sorted(f.rel for f in need) == ["edited.csv", "same.csv"]  # same size and an MD5 to compare

    plan = blob.plan_upload(local, remote, "p", {"same.csv": b"S" * 16, "edited.csv": b"new-md5-16-bytes"})
    assert {t.rel: t.reason for t in plan.transfers} == {
        "a.csv": "new", "longer.csv": "size differs", "edited.csv": "content differs", "nomd5.csv": "no MD5 to compare",
    }
    assert [(t.rel, t.blob) for t in plan.skipped] == [("same.csv", "p/same.csv")]
    assert plan.bytes_to_transfer == 10 + 31 + 40 + 50 and plan.bytes_skipped == 20


def test_plan_download_transfers_only_what_differs(tmp_path):
    remote = {n: RemoteBlob(n, s, m) for n, s, m in [
        ("raw/new.csv", 10, b"N" * 16), ("raw/ok.csv", 20, b"K" * 16), ("raw/sub/trunc.csv", 30, b"T" * 16),
        ("raw/bad.csv", 40, b"B" * 16), ("raw/nomd5.csv", 50, None)]}
    local = {r: LocalFile(r, tmp_path / r, s) for r, s in
             [("ok.csv", 20), ("sub/trunc.csv", 12), ("bad.csv", 40), ("nomd5.csv", 50)]}
    assert sorted(f.rel for f in blob.files_to_hash_for_download(remote, local, "raw")) == ["bad.csv", "ok.csv"]

    plan = blob.plan_download(remote, local, "raw", tmp_path, {"ok.csv": b"K" * 16, "bad.csv": b"x" * 16})
    assert {t.rel: t.reason for t in plan.transfers} == {
        "new.csv": "new", "sub/trunc.csv": "size differs", "bad.csv": "content differs", "nomd5.csv": "no MD5 to compare",
    }
    assert plan.transfers[-1].path == tmp_path / "sub" / "trunc.csv"
    assert [t.rel for t in plan.skipped] == ["ok.csv"]


def test_names_prefixes_and_paths(tmp_path):
    assert blob.normalize_prefix("/raw/v1/") == "raw/v1"
    assert blob.normalize_prefix(None) == ""
    assert blob.blob_name("", "a/b.csv") == "a/b.csv" and blob.blob_name("raw", "a.csv") == "raw/a.csv"
    assert blob.relative_name("raw/v1", "raw/v1/x/y.csv") == "x/y.csv"
    with pytest.raises(LakeRecError, match="plain path"):
        blob.normalize_prefix("raw/../etc")
    assert blob.local_path(tmp_path, "x/y.csv") == tmp_path / "x" / "y.csv"
    for evil in ("../outside.csv", "a/../../b", "/etc/passwd"):
        with pytest.raises(LakeRecError, match="cannot be a local path"):
            blob.local_path(tmp_path, evil)
    assert blob.check_container_name("aliccp-raw") == "aliccp-raw"
    for bad in ("Raw", "ab", "a--b", "-ab", "a_b"):
        with pytest.raises(LakeRecError, match="not valid"):
            blob.check_container_name(bad)


def test_md5_file_streams_in_chunks(tmp_path):
    data = os.urandom(9 * MiB + 3)
    seen = []
    assert blob.md5_file(write(tmp_path, "f", data), seen.append) == md5(data)
    assert len(seen) == 3 and sum(seen) == len(data)  # 4 MiB + 4 MiB + rest: never whole in memory


def test_resolve_auth_precedence_and_errors():
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={WRONG_KEY};EndpointSuffix=core.windows.net"
    url = "https://acct.blob.core.windows.net"
    assert blob.resolve_auth(None, {blob.CONNECTION_STRING_ENV: conn}).connection_string == conn
    assert blob.resolve_auth(url, {blob.CONNECTION_STRING_ENV: conn}) == BlobAuth(account_url=url)
    assert blob.resolve_auth(None, {blob.ACCOUNT_URL_ENV: url}) == BlobAuth(account_url=url)
    with pytest.raises(LakeRecError, match="no Azure Storage credentials configured"):
        blob.resolve_auth(None, {})
    with pytest.raises(LakeRecError, match="must start with https://"):
        blob.resolve_auth("http://127.0.0.1:10000/devstoreaccount1", {})
    a = blob.resolve_auth(None, {blob.CONNECTION_STRING_ENV: conn})
    assert WRONG_KEY not in repr(a) and WRONG_KEY not in a.describe() and "acct" in a.describe()
    assert a.credential == "account key" and BlobAuth(account_url=url).credential == "Azure AD"


@pytest.mark.parametrize("key, says", [
    ("not-base64!", "is not base64: a storage account key is 88 characters"),
    (f"'{ACCOUNT_KEY}'", "is not base64 (it has spaces or quotes)"),
    (ACCOUNT_KEY[:44], "is 44 characters (33 bytes), but a storage account key is 88 characters (64 bytes)"),
    ("", "the AccountKey in AZURE_STORAGE_CONNECTION_STRING is empty"),
])
def test_a_malformed_account_key_says_what_is_wrong_with_it(key, says):
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net"
    with pytest.raises(LakeRecError) as exc:
        blob.resolve_auth(None, {blob.CONNECTION_STRING_ENV: conn})
    msg = str(exc.value)
    assert says in msg and "Access keys" in msg and "az login" not in msg
    assert not key or key not in msg


def test_a_malformed_connection_string_names_the_bad_part():
    with pytest.raises(LakeRecError, match=r"malformed: part 2 of 2 \(separated by ';'\) is not KEY=VALUE") as exc:
        blob.resolve_auth(None, {blob.CONNECTION_STRING_ENV: f"AccountKey={ACCOUNT_KEY};nonsense"})
    assert ACCOUNT_KEY not in str(exc.value)
    with pytest.raises(LakeRecError, match="has an AccountKey but no AccountName"):
        blob.resolve_auth(None, {blob.CONNECTION_STRING_ENV: f"AccountKey={ACCOUNT_KEY};EndpointSuffix=x"})


def test_block_ids_name_the_file_content_and_place():
    a, b = md5(b"version a"), md5(b"version b")
    blocks = blob.block_layout(10, 4, a)
    assert [(x.offset, x.length) for x in blocks] == [(0, 4), (4, 4), (8, 2)]
    assert blob.block_layout(10, 4, a) == blocks  # the same in every run
    assert blocks[0].id == f"lr1-{a.hex()}-000000000000-00000004" and {len(x.id) for x in blocks} == {58}
    assert not {x.id for x in blob.block_layout(10, 4, b)} & {x.id for x in blocks}  # a changed file reuses nothing

    staged = {blocks[0].id: 4, blocks[2].id: 1, blob.block_layout(10, 4, b)[1].id: 4}  # block 2 staged short
    plan = blob.plan_blocks(blocks, staged)
    assert plan.to_send == blocks[1:] and (plan.bytes_staged, plan.bytes_to_send) == (4, 6)
    assert not plan.discard_staged

    # Another tool's uncommitted blocks (ids of another length) would make Azure refuse ours.
    foreign = blob.plan_blocks(blocks, {"YQ==": 4, blocks[0].id: 4})
    assert foreign.discard_staged and foreign.to_send == blocks
    assert blob.plan_blocks(blocks, {}).to_send == blocks

    with pytest.raises(LakeRecError, match="needs 50001 blocks, over Azure's limit of 50000 per blob: "
                                           "pass --block-size-mb 2 or more"):
        blob.block_layout(50_001 * MiB, MiB, a)
    assert len(blob.block_layout(50_000 * MiB, MiB, a)) == 50_000


def test_summary_line():
    s = blob.TransferSummary("download", 2, 1, 3 * MiB, 512, 1.5, {"new": 1, "size differs": 1})
    assert s.describe() == ("download: 2 files downloaded (3.0 MiB; 1 new, 1 size differs), 1 skipped as up to "
                            "date (512 B), in 1.5s (2.0 MiB/s)")
    assert blob.TransferSummary("upload", 0, 4, 0, 2048, 0.3).describe() == (
        "upload: 0 files uploaded (0 B), 4 skipped as up to date (2.0 KiB), in 0.3s")
    resumed = blob.TransferSummary("upload", 1, 0, 3 * MiB, 0, 2.0, {"new": 1}, bytes_resumed=2 * MiB)
    assert resumed.describe() == ("upload: 1 files uploaded (3.0 MiB, 2.0 MiB of it staged by an earlier run; "
                                  "1 new), 0 skipped as up to date (0 B), in 2.0s (512.0 KiB/s)")  # rate of what was sent


def test_redact_removes_keys_and_sas():
    text = "AccountKey=abc+/==;x https://a.blob.core.windows.net/c?sv=2024&sig=SIGNATURE%3D&sp=r design=ok"
    out = blob.redact(text, ["abc+/=="])
    assert "abc+/==" not in out and "SIGNATURE" not in out and "design=ok" in out and "sv=2024" in out


# --------------------------------------------------------------------------------------
# Against Azurite
# --------------------------------------------------------------------------------------


def test_round_trip_is_byte_exact_and_rerun_skips_everything(tmp_path, auth, service, container):  # noqa: F811
    files = make_tree(tmp_path / "raw")
    # A neighbour whose name shares the prefix's first characters must not be downloaded.
    service.create_container(container)
    service.get_blob_client(container, "raw/v10/other.csv").upload_blob(b"not mine")

    s = upload.run(tmp_path / "raw", container, "/raw/v1/", auth=auth, options=SMALL)
    assert (s.transferred, s.skipped, s.bytes_transferred) == (5, 0, sum(map(len, files.values())))
    assert s.reasons == {"new": 5}
    stored = blobs(service, container)
    assert stored == {**{f"raw/v1/{r}": d for r, d in files.items()}, "raw/v10/other.csv": b"not mine"}

    big = service.get_blob_client(container, "raw/v1/big/blob.bin")
    committed, _ = big.get_block_list("committed")
    assert len(committed) == 7  # 6.5 MiB in 1 MiB blocks
    # Azure keeps no MD5 of a block upload: the one set by the upload is the whole file's.
    assert bytes(big.get_blob_properties().content_settings.content_md5) == md5(files["big/blob.bin"])

    s = download.run(container, tmp_path / "out", "raw/v1", auth=auth, options=SMALL)
    assert (s.transferred, s.skipped) == (5, 0)
    assert read_tree(tmp_path / "out") == files

    again = upload.run(tmp_path / "raw", container, "raw/v1", auth=auth, options=SMALL)
    assert (again.transferred, again.skipped, again.bytes_transferred) == (0, 5, 0)
    assert again.bytes_skipped == sum(map(len, files.values()))
    again = download.run(container, tmp_path / "out", "raw/v1", auth=auth, options=SMALL)
    assert (again.transferred, again.skipped) == (0, 5)
    assert "0 files uploaded" in upload.run(tmp_path / "raw", container, "raw/v1", auth=auth,
                                            options=SMALL).describe()


def test_changed_local_files_are_uploaded_again(tmp_path, auth, service, container):  # noqa: F811
    files = make_tree(tmp_path / "raw")
    upload.run(tmp_path / "raw", container, "", auth=auth, options=SMALL)
    edited = files["oracle/truth.json"].replace(b"1", b"9")  # same size, other bytes: only MD5 tells
    grown = files["common_features_train.csv"] + b"extra\n"
    write(tmp_path / "raw", "oracle/truth.json", edited)
    write(tmp_path / "raw", "common_features_train.csv", grown)

    s = upload.run(tmp_path / "raw", container, "", auth=auth, options=SMALL)
    assert (s.transferred, s.skipped) == (2, 3)
    assert s.reasons == {"content differs": 1, "size differs": 1}
    stored = blobs(service, container)
    assert stored["oracle/truth.json"] == edited and stored["common_features_train.csv"] == grown


def test_incomplete_and_foreign_blobs_are_replaced(tmp_path, auth, service, container):  # noqa: F811
    files = make_tree(tmp_path / "raw")
    cc = service.create_container(container)
    # What an interrupted or foreign copy leaves: half a file; a same-size blob of other bytes
    # with its own MD5; a complete blob without any MD5 (cannot be verified, so re-sent);
    # and uncommitted blocks of the big file.
    cc.upload_blob("big/blob.bin", files["big/blob.bin"][: 3 * MiB], overwrite=True)
    cc.get_blob_client("big/blob.bin").stage_block("b2x", b"garbage")
    cc.upload_blob("oracle/truth.json", b"x" * len(files["oracle/truth.json"]))
    from azure.storage.blob import BlobBlock

    nomd5 = cc.get_blob_client("common_features_train.csv")
    nomd5.stage_block("YQ==", files["common_features_train.csv"])
    nomd5.commit_block_list([BlobBlock("YQ==")])
    assert nomd5.get_blob_properties().content_settings.content_md5 is None
    cc.upload_blob("sample_skeleton_train.csv", files["sample_skeleton_train.csv"])  # complete, with MD5

    s = upload.run(tmp_path / "raw", container, "", auth=auth, options=SMALL)
    assert s.reasons == {"new": 1, "size differs": 1, "content differs": 1, "no MD5 to compare": 1}
    assert (s.transferred, s.skipped) == (4, 1)
    assert blobs(service, container) == files


def test_killed_upload_resumes_with_only_the_rest(tmp_path, azurite, service, container):  # noqa: F811
    raw = tmp_path / "raw"
    files = {f"part-{i:02d}.bin": os.urandom(2 * MiB + i) for i in range(24)}
    for rel, data in files.items():
        write(raw, rel, data)
    cmd = [sys.executable, "-m", "lakerec.jobs.upload", "--raw", str(raw), "--container", container, "--workers", "1",
           "--block-size-mb", "1", "--no-progress"]
    env = cli_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string, LAKEREC_LOG_LEVEL="DEBUG")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done, seen = 0, []
    for line in proc.stdout:  # each finished file logs "upload part-NN.bin (new)" at DEBUG
        seen.append(line)
        if b"[lakerec.blob] upload part-" in line:
            done += 1
            if done == 3:
                proc.send_signal(signal.SIGKILL)  # mid-run: the fourth file is on its way, in blocks
                break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, b"".join(seen).decode(errors="replace")
    assert ACCOUNT_KEY.encode() not in b"".join(seen)

    present = blobs(service, container)
    assert 3 <= len(present) < len(files)
    assert all(files[name] == data for name, data in present.items())  # nothing half-committed

    auth = BlobAuth(connection_string=azurite.connection_string)
    s = upload.run(raw, container, "", auth=auth, options=SMALL)
    assert (s.transferred, s.skipped) == (len(files) - len(present), len(present))
    assert blobs(service, container) == files


class CutOff(Exception):
    """Raised by a request hook in place of sending a request, as a dropped connection would fail."""


def recording_service(azurite, before_block: Callable[[int], None] | None = None):  # noqa: F811
    """A client against Azurite that records the size of each block Azurite stored, and calls
    `before_block(n)` before it sends a block, n blocks having been sent before it."""
    lock, started, stored = threading.Lock(), [], []

    def is_block(http_request) -> bool:
        return http_request.method == "PUT" and http_request.query.get("comp") == "block"

    def on_request(request) -> None:
        if is_block(request.http_request):
            with lock:
                if before_block:
                    before_block(len(started))
                started.append(1)

    def on_response(response) -> None:
        if is_block(response.http_request) and response.http_response.status_code == 201:
            with lock:
                stored.append(int(response.http_request.headers["Content-Length"]))

    service = BlobServiceClient.from_connection_string(azurite.connection_string, retry_total=0,
                                                       raw_request_hook=on_request, raw_response_hook=on_response)
    return service, stored


def cut_after(blocks: int) -> Callable[[int], None]:
    """A `before_block` that cuts the upload off (raises CutOff) in place of sending more blocks."""

    def cut(sent: int) -> None:
        if sent >= blocks:
            raise CutOff(f"cut off after {blocks} blocks")

    return cut


def test_an_interrupted_upload_sends_only_the_missing_blocks(tmp_path, azurite, auth, service, container):  # noqa: F811
    block = 256 * 1024
    options = replace(SMALL, block_size=block, single_put_size=block)
    path = write(tmp_path / "raw", "big.bin", os.urandom(10 * block + 1000))  # 11 blocks, the last one short
    data = path.read_bytes()

    cut, stored = recording_service(azurite, cut_after(4))
    with pytest.raises(BlobError, match=r"^1 of 1 files failed to upload: big.bin: cut off after 4 blocks"):
        blob.upload_folder(cut, auth, tmp_path / "raw", container, "", options)
    big = service.get_blob_client(container, "big.bin")
    committed, staged = big.get_block_list("all")
    assert committed == [] and len(staged) == len(stored) == 4  # staged, not visible:
    assert list(service.get_container_client(container).list_blobs()) == []

    again, stored = recording_service(azurite)
    s = blob.upload_folder(again, auth, tmp_path / "raw", container, "", options)
    assert (s.transferred, s.skipped, s.bytes_transferred) == (1, 0, len(data))
    assert len(stored) == 11 - 4 and sum(stored) == len(data) - sum(b.size for b in staged)
    assert s.bytes_resumed == sum(b.size for b in staged)
    assert len(big.get_block_list("committed")[0]) == 11
    assert bytes(big.get_blob_properties().content_settings.content_md5) == md5(data)
    assert md5(big.download_blob().readall()) == md5(data)

    # The file changes after an interrupted upload of its new bytes: the blocks staged from
    # them (same offsets, same sizes) are not reused for the bytes it holds now.
    path.write_bytes(os.urandom(len(data)))
    with pytest.raises(BlobError, match="cut off after 3 blocks"):
        blob.upload_folder(recording_service(azurite, cut_after(3))[0], auth, tmp_path / "raw", container, "", options)
    final = os.urandom(len(data))
    path.write_bytes(final)
    again, stored = recording_service(azurite)
    s = blob.upload_folder(again, auth, tmp_path / "raw", container, "", options)
    assert s.reasons == {"content differs": 1} and len(stored) == 11 and sum(stored) == len(final)
    assert s.bytes_resumed == 0
    assert big.download_blob().readall() == final
    assert bytes(big.get_blob_properties().content_settings.content_md5) == md5(final)


def test_a_file_changed_while_uploaded_is_not_committed(tmp_path, azurite, auth, service, container):  # noqa: F811
    block = 256 * 1024
    options = replace(SMALL, block_size=block, single_put_size=block)
    path = write(tmp_path / "raw", "big.bin", os.urandom(4 * block))

    def touch(sent: int) -> None:  # another program writes to the file as its third block goes up
        if sent == 2:
            os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))

    with pytest.raises(BlobError, match="big.bin changed while it was uploaded, so it was not committed: run again"):
        blob.upload_folder(recording_service(azurite, touch)[0], auth, tmp_path / "raw", container, "", options)
    assert list(service.get_container_client(container).list_blobs()) == []
    # Its bytes are the same (only the time changed): the re-run reuses every staged block.
    again, stored = recording_service(azurite)
    blob.upload_folder(again, auth, tmp_path / "raw", container, "", options)
    assert stored == [] and service.get_blob_client(container, "big.bin").download_blob().readall() == path.read_bytes()


def test_download_resumes_after_damage_and_a_kill(tmp_path, azurite, auth, service, container):  # noqa: F811
    files = make_tree(tmp_path / "raw")
    upload.run(tmp_path / "raw", container, "data", auth=auth, options=SMALL)
    out = tmp_path / "out"
    download.run(container, out, "data", auth=auth, options=SMALL)

    (out / "oracle" / "truth.json").unlink()
    big = out / "big" / "blob.bin"
    big.write_bytes(files["big/blob.bin"][: 2 * MiB])  # truncated, as by an interrupted copy
    write(out, "sample_skeleton_train.csv", bytes(len(files["sample_skeleton_train.csv"])))  # same size, zeros
    write(out, "big/blob.bin.partial", b"leftover of a killed run")
    before = {p: p.stat().st_mtime_ns for p in [out / "common_features_train.csv", out / "oracle/deep/empty.txt"]}

    s = download.run(container, out, "data", auth=auth, options=SMALL)
    assert s.reasons == {"new": 1, "size differs": 1, "content differs": 1}
    assert (s.transferred, s.skipped) == (3, 2)
    assert read_tree(out) == files  # the leftover .partial was overwritten, then renamed
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # skipped files were not rewritten

    # One file failing (its path is taken by a folder) does not stop the others; the error
    # names it and says to run again, and the re-run fetches only that one.
    fresh = tmp_path / "fresh"
    (fresh / "oracle" / "truth.json").mkdir(parents=True)
    with pytest.raises(LakeRecError) as exc:
        download.run(container, fresh, "data", auth=auth, options=SMALL)
    assert str(exc.value).startswith("1 of 5 files failed to download: cannot write ")
    assert "truth.json" in str(exc.value) and "run the same command again" in str(exc.value)
    assert {r: d for r, d in read_tree(fresh).items()} == {r: d for r, d in files.items() if r != "oracle/truth.json"}
    (fresh / "oracle" / "truth.json").rmdir()
    s = download.run(container, fresh, "data", auth=auth, options=SMALL)
    assert (s.transferred, s.skipped) == (1, 4) and read_tree(fresh) == files

    # A download killed part way leaves only complete files (and .partial ones) behind.
    many = {f"f{i:02d}.bin": os.urandom(MiB + i) for i in range(24)}
    for rel, data in many.items():
        service.get_blob_client(container, f"many/{rel}").upload_blob(data)
    cmd = [sys.executable, "-m", "lakerec.jobs.download", "--container", container, "--prefix", "many", "--out",
           str(tmp_path / "many"), "--workers", "1", "--no-progress"]
    env = cli_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string, LAKEREC_LOG_LEVEL="DEBUG")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = 0
    for line in proc.stdout:
        if b"[lakerec.blob] download f" in line:
            done += 1
            if done == 3:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=30)
    got = {p.name: p.read_bytes() for p in (tmp_path / "many").glob("*.bin")}
    assert 3 <= len(got) < len(many) and all(many[n] == d for n, d in got.items())
    s = download.run(container, tmp_path / "many", "many", auth=auth, options=SMALL)
    assert (s.transferred, s.skipped) == (len(many) - len(got), len(got))
    assert {p.name: p.read_bytes() for p in (tmp_path / "many").glob("*.bin")} == many


# --------------------------------------------------------------------------------------
# Errors a user can cause: one clear line, exit 2, no secret anywhere
# --------------------------------------------------------------------------------------


def run_cli(module, argv, environ, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        module.main(argv, environ=environ)
    assert exc.value.code == 2
    err = capsys.readouterr()
    assert ACCOUNT_KEY not in err.out + err.err
    lines = [ln for ln in err.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err.err
    return lines[0]


def test_user_errors_are_one_clear_line(tmp_path, azurite, capsys, container, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    env = {blob.CONNECTION_STRING_ENV: azurite.connection_string}
    (tmp_path / "empty").mkdir()
    write(tmp_path / "raw", "a.csv", b"1,2,3\n")

    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", container], {}, capsys)
    assert "no Azure Storage credentials configured" in msg and blob.CONNECTION_STRING_ENV in msg
    msg = run_cli(upload, ["--raw", str(tmp_path / "nope"), "--container", container], env, capsys)
    assert "does not exist" in msg and "nope" in msg
    msg = run_cli(upload, ["--raw", str(tmp_path / "empty"), "--container", container], env, capsys)
    assert "holds no files" in msg
    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", "Bad_Name"], env, capsys)
    assert "container name 'Bad_Name' is not valid" in msg
    msg = run_cli(download, ["--container", "no-such-container", "--out", str(tmp_path / "o")], env, capsys)
    assert msg.startswith("error: container not found at http://127.0.0.1:") and "no-such-container" in msg

    upload.main(["--raw", str(tmp_path / "raw"), "--container", container, "--prefix", "here", "--no-progress"],
                environ=env)
    msg = run_cli(download, ["--container", container, "--prefix", "there", "--out", str(tmp_path / "o")], env, capsys)
    assert "no blobs under prefix 'there'" in msg
    assert not (tmp_path / "o").exists()

    closed = free_port()
    dead = {blob.CONNECTION_STRING_ENV: azurite.connection_string.replace(str(azurite.port), str(closed))}
    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", container, "--retries", "0"], dead, capsys)
    assert f"cannot reach Azure Blob Storage at http://127.0.0.1:{closed}/devstoreaccount1" in msg

    wrong_key = {blob.CONNECTION_STRING_ENV: azurite.connection_string.replace(ACCOUNT_KEY, WRONG_KEY)}
    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", container, "--retries", "0"],
                  wrong_key, capsys)
    # Azure says AuthenticationFailed, Azurite AuthorizationFailure: both are a refusal (403) of the key.
    assert re.search(r"listing blobs refused by .* \((AuthenticationFailed|AuthorizationFailure)\): the "
                     r"account key in AZURE_STORAGE_CONNECTION_STRING is (not a key of account devstoreaccount1|wrong)",
                     msg), msg
    assert WRONG_KEY not in msg and "az login" not in msg

    # A key the service could never accept is refused before any request, saying why.
    cut_short = {blob.CONNECTION_STRING_ENV: azurite.connection_string.replace(ACCOUNT_KEY, ACCOUNT_KEY[:60])}
    msg = run_cli(download, ["--container", container, "--out", str(tmp_path / "o")], cut_short, capsys)
    assert msg.startswith("error: the AccountKey in AZURE_STORAGE_CONNECTION_STRING is 60 characters (45 bytes)")
    assert "az login" not in msg and ACCOUNT_KEY[:60] not in msg

    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", container, "--account-url",
                           f"http://127.0.0.1:{azurite.port}/devstoreaccount1"], {}, capsys)
    assert "must start with https://" in msg

    not_base64 = {blob.CONNECTION_STRING_ENV: azurite.connection_string.replace(ACCOUNT_KEY, "my-key-" * 12)}
    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", container], not_base64, capsys)
    assert "the AccountKey in AZURE_STORAGE_CONNECTION_STRING is not base64" in msg and "az login" not in msg

    unreadable = {blob.CONNECTION_STRING_ENV: azurite.connection_string + "BlobEndpoint=http://[::1"}
    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", container], unreadable, capsys)
    assert "cannot use the storage credentials" in msg
    assert ACCOUNT_KEY not in caplog.text and WRONG_KEY not in caplog.text


def test_account_url_without_any_identity_says_how_to_sign_in(tmp_path, monkeypatch, capsys, container):  # noqa: F811
    # Only the environment credential (service principal variables) is tried, and none is
    # set: DefaultAzureCredential fails before any request, so nothing leaves this machine.
    for k in list(os.environ):
        if k.startswith("AZURE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
    write(tmp_path / "raw", "a.csv", b"x")
    msg = run_cli(upload, ["--raw", str(tmp_path / "raw"), "--container", container, "--retries", "0",
                           "--account-url", f"https://127.0.0.1:{free_port()}/devstoreaccount1"], {}, capsys)
    assert "no Azure credential could sign in" in msg and "az login" in msg


def test_cli_upload_end_to_end(tmp_path, azurite, service, container):  # noqa: F811
    files = make_tree(tmp_path / "raw")
    cmd = [sys.executable, "-m", "lakerec.jobs.upload", "--raw", str(tmp_path / "raw"), "--container", container,
           "--prefix", "aliccp/raw", "--block-size-mb", "2"]
    env = cli_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string, LAKEREC_LOG_LEVEL="DEBUG")
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "upload: 5 files uploaded (6.5 MiB; 5 new), 0 skipped" in first.stderr
    assert "upload:" in first.stderr and "100%" in first.stderr  # the progress bar reached the end
    assert "created container" in first.stderr
    assert blobs(service, container) == {f"aliccp/raw/{r}": d for r, d in files.items()}

    second = subprocess.run(cmd + ["--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "upload: 0 files uploaded (0 B), 5 skipped as up to date (6.5 MiB)" in second.stderr
    for out in (first, second):
        assert ACCOUNT_KEY not in out.stdout + out.stderr
        assert ACCOUNT_KEY[:16] not in out.stdout + out.stderr
