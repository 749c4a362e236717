"""Which credentials reach the storage account, and keeping their secrets out of messages.

The connection string in `AZURE_STORAGE_CONNECTION_STRING`, or an account URL
(`--account-url` or `AZURE_STORAGE_ACCOUNT_URL`) with `DefaultAzureCredential` (az login,
managed identity, workload identity, service principal in AZURE_CLIENT_* variables). Secrets
are never logged: error messages pass through `redact` before they are raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from lakerec.errors import LakeRecError

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL_ENV = "AZURE_STORAGE_ACCOUNT_URL"

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
        if self.connection_string:
            m = re.search(r"(?:^|;)\s*AccountName=([^;]+)", self.connection_string, re.I)
            return m.group(1).strip() if m else None
        return None

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
        LakeRecError: nothing is configured, or the account URL is not https://.
    """
    url = (account_url or "").strip()
    conn = (environ.get(CONNECTION_STRING_ENV) or "").strip()
    if not url and conn:
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
