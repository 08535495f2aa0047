"""Whose memories a memory-API request may touch: the ``(tenant, user)`` scope, from the key and what it names.

The rules of :mod:`proxy.identity`, made strict for an API that reads and deletes data:

- the user is named by the ``user`` parameter (or the body's ``user``), else a user header, else it is the key's own;
- a trusted key may name any user of its tenant; any other key naming a user other than its own gets 403 (never a
  silent fallback to its own user: a delete must not land on the wrong person);
- the tenant is the key's; only an admin key may name another (``tenant`` parameter), and then it must name the user
  too; a non-admin key naming another tenant gets 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from memory import Scope
from proxy.auth import KeyRecord
from proxy.errors import InvalidRequestError, PermissionDeniedError
from proxy.identity import IdentityRules, resolve_identity

MemoryScope = Scope
"""Whose memories: (tenant, user). Named here so the routes need not import the memory library."""


def resolve_memory_scope(
    key: KeyRecord,
    *,
    user: str | None,
    tenant: str | None,
    headers: Mapping[str, str],
    rules: IdentityRules,
) -> Scope:
    """Raises InvalidRequestError (malformed id) or PermissionDeniedError (a scope the key does not grant)."""
    # Resolve as if trusted, to read and check what the request names; then decide whether the key may name it.
    named = resolve_identity(replace(key, trusted=True), user, headers, rules)
    may_name_users = key.trusted or key.admin
    if named.user_source != "key" and named.user != key.user and not may_name_users:
        raise PermissionDeniedError(
            "This API key may only access its own memories; it cannot name another user.", param="user"
        )
    if tenant is None or tenant == key.tenant:
        return Scope(key.tenant, named.user)
    if not key.admin:
        raise PermissionDeniedError("Only an admin key may name another tenant.", param="tenant")
    if named.user_source == "key":
        raise InvalidRequestError("Naming another tenant needs the user too ('user').", param="user")
    try:
        return Scope(tenant, named.user)
    except ValueError:
        raise InvalidRequestError("'tenant' must be 1-256 printable characters.", param="tenant") from None
