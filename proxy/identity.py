"""Who a request is for: API key → tenant; the end user from the body's ``user``, a user header, or the key itself.

The memory scope of a request is ``(tenant, user)``. The tenant always comes from the key, never from the request.
The user may be asserted by the request (body ``user``, then ``X-OpenWebUI-User-Id`` or a configured header) only
when the key is trusted to assert users (a backend or Open WebUI serving many people); any other key is always its
own user, whatever the request says. So no request can reach a scope its key does not grant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from memory import Scope
from proxy.auth import KeyRecord
from proxy.errors import InvalidRequestError

OPENWEBUI_USER_HEADER = "x-openwebui-user-id"
OPENWEBUI_CHAT_HEADER = "x-openwebui-chat-id"
MAX_ID_CHARS = 256
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")
ID_SCHEMA = {"minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": _PRINTABLE.pattern}
"""What a user, tenant or conversation id must be, for the OpenAPI document (checked by ``_checked``)."""

UserSource = Literal["body", "header", "key"]


@dataclass(frozen=True, slots=True)
class Identity:
    key: KeyRecord
    tenant: str
    user: str
    user_source: UserSource
    conversation_id: str | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.tenant, self.user)


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """Which headers name the user and the conversation (lower-case names), in order of preference."""

    user_headers: tuple[str, ...] = (OPENWEBUI_USER_HEADER,)
    conversation_headers: tuple[str, ...] = (OPENWEBUI_CHAT_HEADER,)

    @classmethod
    def with_extra(cls, user_header: str | None, conversation_header: str | None) -> IdentityRules:
        users = (user_header.lower(),) if user_header else ()
        conversations = (conversation_header.lower(),) if conversation_header else ()
        return cls(
            user_headers=tuple(dict.fromkeys(users + (OPENWEBUI_USER_HEADER,))),
            conversation_headers=tuple(dict.fromkeys(conversations + (OPENWEBUI_CHAT_HEADER,))),
        )


def resolve_identity(
    key: KeyRecord, body_user: str | None, headers: Mapping[str, str], rules: IdentityRules
) -> Identity:
    """Raises InvalidRequestError for a user or conversation id that is empty, too long or has control characters."""
    user, source = key.user, "key"
    if key.trusted:
        if body_user is not None:
            user, source = _checked(body_user, "user"), "body"
        else:
            for name in rules.user_headers:
                value = headers.get(name)
                if value is not None and value.strip():
                    user, source = _checked(value.strip(), name), "header"
                    break
    conversation = None
    for name in rules.conversation_headers:
        value = headers.get(name)
        if value is not None and value.strip():
            conversation = _checked(value.strip(), name)
            break
    return Identity(key=key, tenant=key.tenant, user=user, user_source=source, conversation_id=conversation)


def _checked(value: str, where: str) -> str:
    if not value or len(value) > MAX_ID_CHARS or not _PRINTABLE.match(value):
        raise InvalidRequestError(
            f"'{where}' must be 1-{MAX_ID_CHARS} printable characters.", param=where, code="invalid_user"
        )
    return value


def cache_salt(secret: bytes, identity: Identity) -> str:
    """The prefix-cache salt sent upstream: per tenant (or per user if the key says so), keyed by a server secret,
    so nobody can compute another tenant's salt and probe its cached prefixes by timing."""
    subject = identity.tenant if identity.key.cache_salt == "tenant" else f"{identity.tenant}\x00{identity.user}"
    return hmac.new(secret, subject.encode(), hashlib.sha256).hexdigest()[:32]
