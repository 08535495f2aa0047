"""Stop work for a client that has gone: the upstream request is cancelled, so vLLM stops generating for nobody."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from proxy.errors import ClientClosedRequest

T = TypeVar("T")


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise ``ClientClosedRequest``.

    Call after the body has been read: the next ASGI message is then ``http.disconnect``, which arrives only when
    the client closes the connection (or after the response has been sent).
    """
    current = asyncio.current_task()
    assert current is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await request.receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not disconnected:
            raise
        current.uncancel()
        raise ClientClosedRequest("The client closed the connection before the answer was ready.") from None
    finally:
        watcher.cancel()
