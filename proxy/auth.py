"""Client authentication: ``Authorization: Bearer <key>`` against the configured keys' SHA-256 digests."""

from __future__ import annotations

import hashlib
import logging

from proxy.errors import AuthenticationError

logger = logging.getLogger(__name__)


class ApiKeyAuth:
    """Checks bearer keys. With no keys configured it lets everyone in (dev mode) and says so at start-up."""

    def __init__(self, key_digests: frozenset[bytes]) -> None:
        # Only digests are held: a heap dump or a log line never shows a client key.
        self._digests = key_digests

    @property
    def open(self) -> bool:
        return not self._digests

    def check(self, authorization: str | None) -> None:
        if self.open:
            return
        if not authorization:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("The Authorization header must be 'Bearer <key>'.")
        # Membership in a set of SHA-256 digests: lookup timing reveals nothing usable about a key's bytes.
        if hashlib.sha256(key.strip().encode()).digest() not in self._digests:
            raise AuthenticationError("Incorrect API key provided.")

    def warn_if_open(self) -> None:
        if self.open:
            logger.warning(
                "\n%s\n  NO API KEYS CONFIGURED: memproxy is OPEN to anyone who can reach it.\n"
                "  Set MEMPROXY_API_KEYS=key1,key2 before exposing it beyond this machine.\n%s",
                "!" * 78,
                "!" * 78,
            )
