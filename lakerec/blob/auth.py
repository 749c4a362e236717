"""Which credentials reach the storage account, and keeping their secrets out of messages.

The connection string in `AZURE_STORAGE_CONNECTION_STRING`, or an account URL
(`--account-url` or `AZURE_STORAGE_ACCOUNT_URL`) with `DefaultAzureCredential` (az login,
managed identity, workload identity, service principal in AZURE_CLIENT_* variables). Secrets
are never logged: error messages pass through `redact` before they are raised.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from lakerec.errors import LakeRecError

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL_ENV = "AZURE_STORAGE_ACCOUNT_URL"
ACCOUNT_KEY_BYTES = 64  # every storage account key is 512 bits: 88 base64 characters ending in ==
WHERE_KEYS = "Azure portal > storage account > Access keys"
CONNECTION_STRING_SHAPE = (
    "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net"
)

_SECRET_PATTERNS = re.compile(r"\b(AccountKey|SharedAccessSignature|sig)=([^;&\s'\"]+)", re.I)


@dataclass(frozen=True)
class BlobAuth:
    """How to reach the account. The connection string never appears in repr() or logs."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None

    def describe(self) -> str:
        """Which credential is used, for a log line: the account name or URL, never a secret."""
        if self.connection_string:
            return f"connection string from {CONNECTION_STRING_ENV} (account {self.account_name or '?'})"
        return f"DefaultAzureCredential for {strip_query(self.account_url or '')}"

    @property
    def account_name(self) -> str | None:
        """The AccountName of the connection string (None for an account URL or when it has none)."""
        return connection_settings(self.connection_string).get("ACCOUNTNAME") if self.connection_string else None

    @property
    def credential(self) -> str:
        """What signs the requests: "account key", "SAS token" (both from the connection
        string), "no credential" (a connection string with neither) or "Azure AD" (an account URL)."""
        if not self.connection_string:
            return "Azure AD"
        settings = connection_settings(self.connection_string)
        if "ACCOUNTKEY" in settings:
            return "account key"
        return "SAS token" if "SHAREDACCESSSIGNATURE" in settings else "no credential"

    def secrets(self) -> list[str]:
        """Values that must never be printed: the account key, SAS tokens and signatures."""
        out = []
        for text in (self.connection_string, self.account_url):
            if not text:
                continue
            out += [v for v in re.findall(r"\b(?:AccountKey|SharedAccessSignature|sig)=([^;&\s]+)", text, re.I) if v]
            if "?" in text:
                out.append(text.split("?", 1)[1])
        return out


def resolve_auth(account_url: str | None, environ: Mapping[str, str]) -> BlobAuth:
    """Pick the credentials: an explicit --account-url wins, then the connection string, then the env URL.

    Args:
        account_url: the --account-url flag (None or empty when not given).
        environ: the environment to read `CONNECTION_STRING_ENV` and `ACCOUNT_URL_ENV` from.

    Returns:
        The connection string, or an https account URL for `DefaultAzureCredential`.

    Raises:
        LakeRecError: nothing is configured, the connection string is malformed (see
            `check_connection_string`), or the account URL is not https://.
    """
    url = (account_url or "").strip()
    conn = (environ.get(CONNECTION_STRING_ENV) or "").strip()
    if not url and conn:
        check_connection_string(conn)
        return BlobAuth(connection_string=conn)
    url = url or (environ.get(ACCOUNT_URL_ENV) or "").strip()
    if not url:
        raise LakeRecError(
            f"no Azure Storage credentials configured: set {CONNECTION_STRING_ENV} (Azure portal > storage "
            f"account > Access keys), or pass --account-url https://ACCOUNT.blob.core.windows.net (or set "
            f"{ACCOUNT_URL_ENV}) and sign in with `az login` or a managed identity"
        )
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise LakeRecError(
            f"account URL {strip_query(url)!r} must start with https:// (Azure AD tokens are only sent over "
            "TLS), e.g. https://ACCOUNT.blob.core.windows.net"
        )
    return BlobAuth(account_url=url)


def connection_settings(conn: str) -> dict[str, str]:
    """The KEY=VALUE parts of a connection string, read as the Azure SDK reads them (keys upper-cased)."""
    parts = (p.split("=", 1) for p in conn.rstrip(";").split(";") if "=" in p)
    return {k.upper(): v for k, v in parts}


def check_connection_string(conn: str) -> None:
    """Refuse a connection string the SDK would misread, saying what is wrong (never a secret).

    Raises:
        LakeRecError: a part is not KEY=VALUE, the AccountKey is not a storage account key
            (see `check_account_key`), or there is an AccountKey but no AccountName (the SDK
            would then send requests without any credential).
    """
    parts = conn.rstrip(";").split(";")
    bad = [str(i) for i, p in enumerate(parts, 1) if "=" not in p]
    if bad:
        raise LakeRecError(
            f"{CONNECTION_STRING_ENV} is malformed: part {', '.join(bad)} of {len(parts)} (separated by ';') is not "
            f"KEY=VALUE; it looks like {CONNECTION_STRING_SHAPE} ({WHERE_KEYS} > Connection string)"
        )
    settings = connection_settings(conn)
    if "ACCOUNTKEY" in settings:
        check_account_key(settings["ACCOUNTKEY"])
        if not settings.get("ACCOUNTNAME"):
            raise LakeRecError(f"{CONNECTION_STRING_ENV} has an AccountKey but no AccountName: it looks like "
                               f"{CONNECTION_STRING_SHAPE}")


def check_account_key(key: str) -> None:
    """Refuse an AccountKey the service could never accept, saying what is wrong with it (never the key).

    Without this check the SDK fails while signing the first request, with an error that
    reads like a missing sign-in.

    Raises:
        LakeRecError: the key is empty, not base64, or does not decode to 64 bytes.
    """
    again = f"copy key1 or key2 again from {WHERE_KEYS} into {CONNECTION_STRING_ENV}"
    if not key:
        raise LakeRecError(f"the AccountKey in {CONNECTION_STRING_ENV} is empty: {again}")
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        odd = " (it has spaces or quotes)" if re.search(r"[\s'\"]", key) else ""
        raise LakeRecError(
            f"the AccountKey in {CONNECTION_STRING_ENV} is not base64{odd}: a storage account key is 88 characters "
            f"of A-Z, a-z, 0-9, + and / ending in ==; {again}"
        ) from None
    if len(raw) != ACCOUNT_KEY_BYTES:
        raise LakeRecError(
            f"the AccountKey in {CONNECTION_STRING_ENV} is {len(key)} characters ({len(raw)} bytes), but a storage "
            f"account key is 88 characters ({ACCOUNT_KEY_BYTES} bytes): it was cut short or has extra characters; "
            f"{again}"
        )


def strip_query(url: str) -> str:
    """A URL without its query string (where a SAS token would be)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove account keys, SAS tokens and signatures from a message.

    Args:
        text: the message, e.g. an Azure SDK error.
        secrets: exact values to hide as well (see `BlobAuth.secrets`).

    Returns:
        The message with each secret replaced by `***`.
    """
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return _SECRET_PATTERNS.sub(lambda m: f"{m.group(1)}=***", text)
