"""Client authentication: ``Authorization: Bearer <key>`` → the :class:`KeyRecord` configured for that key.

Keys are configured by their SHA-256 (a keys file, see :func:`load_key_records`); clear keys from
``MEMPROXY_API_KEYS`` are hashed at start and only the digests are kept. Each record says which tenant the key
belongs to, which user it stands for when the request names none, whether it may assert end users (a backend or
Open WebUI serving many people) and whether it is an admin key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.errors import AuthenticationError

logger = logging.getLogger(__name__)

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
DEV_TENANT = "default"
DEV_USER = "default"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What one API key grants. ``digest`` is the key's SHA-256; the key itself is never held."""

    digest: bytes
    tenant: str
    user: str
    """The user the key stands for when it may not (or does not) assert one."""
    name: str = ""
    trusted: bool = False
    """May assert end users (body ``user`` or a user header); otherwise every request is the key's own user."""
    admin: bool = False
    """May use the admin memory API (any user of any tenant)."""
    cache_salt: str = "tenant"
    """``tenant``: one prefix-cache salt per tenant; ``user``: one per user (no cache sharing inside the tenant)."""

    def __post_init__(self) -> None:
        for field_name in ("tenant", "user"):
            if not _NAME.match(getattr(self, field_name)):
                raise ValueError(f"key record {self.name!r}: {field_name} must be 1-256 printable characters")
        if self.cache_salt not in ("tenant", "user"):
            raise ValueError(f"key record {self.name!r}: cache_salt must be 'tenant' or 'user'")

    @property
    def key_id(self) -> str:
        """A short, non-secret handle for logs (the first 12 hex digits of the digest)."""
        return self.digest.hex()[:12]


DEV_RECORD = KeyRecord(digest=b"", tenant=DEV_TENANT, user=DEV_USER, name="open-mode", trusted=True, admin=True)
"""Who a request is when no key is configured at all (single-tenant dev mode): everything is open anyway."""


def load_key_records(data: Any, *, source: str = "keys") -> list[KeyRecord]:
    """Key records from parsed JSON: a list (or ``{"keys": [...]}``) of objects with ``sha256`` (hex), ``tenant``
    and optional ``user``, ``name``, ``trusted``, ``admin``, ``cache_salt``. Raises ValueError naming the entry."""
    entries = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"{source}: expected a list of key records (or an object with 'keys')")
    records: list[KeyRecord] = []
    for index, entry in enumerate(entries):
        where = f"{source}[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: a key record must be an object")
        unknown = set(entry) - {"sha256", "tenant", "user", "name", "trusted", "admin", "cache_salt"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        digest = str(entry.get("sha256", "")).strip().lower()
        if not _HEX_DIGEST.match(digest):
            raise ValueError(f"{where}: 'sha256' must be the key's SHA-256 as 64 hex digits")
        tenant = entry.get("tenant")
        if not isinstance(tenant, str):
            raise ValueError(f"{where}: 'tenant' is required")
        name = str(entry.get("name") or digest[:12])
        try:
            records.append(
                KeyRecord(
                    digest=bytes.fromhex(digest),
                    tenant=tenant,
                    user=str(entry.get("user") or f"key-{digest[:12]}"),
                    name=name,
                    trusted=_flag(entry, "trusted", where),
                    admin=_flag(entry, "admin", where),
                    cache_salt=str(entry.get("cache_salt", "tenant")),
                )
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return records


def read_keys_file(path: Path) -> list[KeyRecord]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read keys file {path}: {exc}") from None
    return load_key_records(data, source=str(path))


def _flag(entry: dict[str, Any], name: str, where: str) -> bool:
    value = entry.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: '{name}' must be true or false")
    return value


def hash_key(key: str) -> str:
    """The hex SHA-256 to put in a keys file (``memproxy keys hash``)."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Checks bearer keys against the configured digests. With no keys it lets everyone in (dev mode, as
    :data:`DEV_RECORD`) and says so loudly at start-up."""

    def __init__(self, records: list[KeyRecord]) -> None:
        by_digest: dict[bytes, KeyRecord] = {}
        for record in records:
            if record.digest in by_digest:
                raise ValueError(f"the same key is configured twice ({by_digest[record.digest].name!r}, {record.name!r})")
            by_digest[record.digest] = record
        # Only digests are held: a heap dump or a log line never shows a client key.
        self._records = by_digest

    @property
    def open(self) -> bool:
        return not self._records

    def authenticate(self, authorization: str | None) -> KeyRecord:
        if self.open:
            return DEV_RECORD
        if not authorization:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("The Authorization header must be 'Bearer <key>'.")
        # A dict lookup by SHA-256 digest: lookup timing reveals nothing usable about a key's bytes.
        record = self._records.get(hashlib.sha256(key.strip().encode()).digest())
        if record is None:
            raise AuthenticationError("Incorrect API key provided.")
        return record

    def warn_if_open(self) -> None:
        if self.open:
            logger.warning(
                "\n%s\n  NO API KEYS CONFIGURED: memproxy is OPEN to anyone who can reach it, and any request may\n"
                "  act as any user of the default tenant. Configure keys (MEMPROXY_KEYS_FILE) before exposing it.\n%s",
                "!" * 78,
                "!" * 78,
            )
