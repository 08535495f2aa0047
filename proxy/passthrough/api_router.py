"""HTTP in and out for every ``/v1/*`` route the proxy does not serve itself (``/v1/completions``,
``/v1/embeddings``, ``/v1/audio/…``, vLLM's extras): passed to the upstream unchanged, with the client's key checked
as on every route. The logic lives in :mod:`proxy.passthrough.serving`.

The catch-all is registered after every other router and steps aside for the proxy's own paths, so they keep their
answers: a path another route serves (with any method: a wrong one stays the proxy's 405) and any path under the
proxy's own APIs (:data:`OWN_APIS`: an unknown ``/v1/memories/…`` is the proxy's 404) never reaches the upstream. It
is left out of the OpenAPI document, which describes the proxy's own API.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from proxy.auth import KeyRecord
from proxy.disconnect import cancel_on_disconnect
from proxy.passthrough.serving import ForwardedRequest, PassthroughService
from proxy.routes import require_api_key

OWN_APIS = frozenset({"memories", "adapters"})
"""First segments under ``/v1`` whose whole tree is the proxy's own API (``/v1/memories``, ``/v1/adapters``)."""
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class UpstreamRoute(APIRoute):
    """A route that does not match what the proxy serves itself (see the module's docstring)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(_PROBE):
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is Match.NONE or not _served_by_proxy(scope, child["path_params"]["path"]):
            return match, child
        return Match.NONE, {}


_PROBE = "memproxy.passthrough.probe"
"""Set in the scope while the app's routes are asked about a path, so this route stays out of its own question."""


def _served_by_proxy(scope: Scope, path: str) -> bool:
    """``path`` (under ``/v1``) is in one of the proxy's own APIs, or another route of the app matches it, as is or
    with its trailing slash toggled (which the router answers with a redirect to the proxy's route)."""
    if path.split("/", 1)[0] in OWN_APIS:
        return True
    full = scope["path"]
    toggled = full.rstrip("/") if full.endswith("/") else f"{full}/"
    routes: list[BaseRoute] = scope["router"].routes
    probes = [{**scope, "path": candidate, _PROBE: True} for candidate in (full, toggled)]
    return any(route.matches(probe)[0] is not Match.NONE for probe in probes for route in routes)


router = APIRouter(route_class=UpstreamRoute)


@router.api_route("/v1/{path:path}", methods=METHODS, include_in_schema=False)
async def forward_to_upstream(path: str, request: Request, key: KeyRecord = Depends(require_api_key)) -> Response:
    service: PassthroughService = request.app.state.passthrough_service
    forwarded = ForwardedRequest(
        method=request.method,
        path=path,
        query=request.scope.get("query_string", b""),
        headers=request.headers.items(),
        body=await request.body(),
    )
    answer = await cancel_on_disconnect(request, service.forward(forwarded, key))
    response = StreamingResponse(answer.body, status_code=answer.status_code)
    for name, value in answer.headers:
        response.headers.append(name, value)
    return response
