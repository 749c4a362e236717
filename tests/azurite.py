"""A real Azure Storage emulator (Azurite's blob service) for the tests, on 127.0.0.1.

Import the fixtures into a test module: `from tests.azurite import azurite, container`.
The session fixture starts `node_modules/.bin/azurite-blob` on a free port with its data
in a temporary folder, waits until it accepts connections, and kills it at the end.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"

# Azurite's well-known development account (published in its README; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    port: int
    location: Path

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_azurite(location: Path, timeout: float = 60.0) -> tuple[subprocess.Popen, int]:
    """Start Azurite's blob service on a free port; return the process and the port."""
    if not AZURITE.exists():
        pytest.fail(
            f"{AZURITE.relative_to(REPO)} is missing: run `make setup` (or `npm install --no-audit --no-fund`) "
            "to install Azurite, the Azure Storage emulator these tests run against",
            pytrace=False,
        )
    last_err = ""
    for _attempt in range(3):  # another process may grab the free port between bind and listen
        port = free_port()
        log = open(location / f"azurite-{port}.log", "wb")
        proc = subprocess.Popen(
            [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
             "--silent", "--skipApiVersionCheck", "--loose"],
            stdout=log, stderr=subprocess.STDOUT, cwd=location, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _accepting(port):
                return proc, port
            time.sleep(0.1)
        stop(proc)
        log.close()
        last_err = (location / f"azurite-{port}.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"Azurite did not start on 127.0.0.1: {last_err}", pytrace=False)


def stop(proc: subprocess.Popen) -> None:
    """Kill Azurite at once: its data is a throwaway folder, and a graceful stop (SIGTERM) waits
    for the clients' idle keep-alive connections to close, which took 10 s of every test run."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Azurite:
    location = tmp_path_factory.mktemp("azurite")
    proc, port = start_azurite(location)
    try:
        yield Azurite(port=port, location=location)
    finally:
        stop(proc)


_counter = itertools.count()


@pytest.fixture()
def container() -> str:
    """A fresh, valid container name for one test (the container itself is not created)."""
    return f"t{next(_counter)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
