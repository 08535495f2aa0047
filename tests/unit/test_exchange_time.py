"""Saying when an exchange happened (``X-Memproxy-Timestamp`` / ``memproxy.timestamp``), for importing past
conversations: only trusted and admin keys may, the time is checked before anything happens, and the memories the
exchange leaves carry it."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.support.chat_memory import chat, settle
from tests.support.upstreams import completion

MAY_8 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "given",
    [{"headers": {"X-Memproxy-Timestamp": "2023-05-08T13:56:00Z"}}, {"memproxy": {"timestamp": MAY_8}}],
    ids=["header", "body"],
)
async def test_a_trusted_key_dates_the_exchange(proxy, engine, upstream, given) -> None:
    upstream.respond = lambda request: httpx.Response(200, json=completion("Noted."))
    client = proxy()
    response = await chat(client, "acme-svc", "I went to a support group yesterday", user="alice", **given)
    assert response.status_code == 200
    await settle(client, engine)
    stored = (await engine.list("alice", tenant="acme")).items
    assert stored and {memory.event_time for memory in stored} == {MAY_8}
    later = await chat(client, "acme-svc", "What did I go to?", user="alice")
    assert '"User: I went to a support group yesterday" (2023-05-08)' in upstream.last_json["messages"][-1]["content"]
    assert later.status_code == 200


async def test_only_trusted_or_admin_keys_may_date_an_exchange(proxy, engine, upstream) -> None:
    client = proxy()
    response = await chat(client, "acme-bob", "I live in Lisbon", headers={"X-Memproxy-Timestamp": str(MAY_8)})
    assert response.status_code == 403 and response.json()["error"]["param"] == "X-Memproxy-Timestamp"
    assert upstream.chats == []
    await settle(client, engine)
    assert await engine.count("bob", tenant="acme") == 0


@pytest.mark.parametrize("value", ["yesterday", "-5", "nan", "9999999999", "2999-01-01T00:00:00Z"])
async def test_a_time_that_is_not_one_or_is_ahead_is_refused(proxy, upstream, value) -> None:
    response = await chat(proxy(), "acme-svc", "Hello", user="alice", headers={"X-Memproxy-Timestamp": value})
    assert response.status_code == 400 and response.json()["error"]["param"] == "X-Memproxy-Timestamp"
    assert upstream.chats == []
