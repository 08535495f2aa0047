"""Fuzz: every operation of the published OpenAPI document, with requests ``schemathesis`` generates from it
(schema-valid and, in negative mode, schema-breaking), sent with a valid key, an admin key and hostile ones (none,
unknown, oversized) to the real app on the embedded store (SQLite, FAISS, ONNX MiniLM, the durable queue) in front
of the stub upstream, all in this process. Counted: requests, responses >= 500, and requests answered 4xx after
which the state was not what it was before (the store's change-log position, the write queue's depth, the export of
every user the keys can reach); and, of the schema-valid requests with a valid key, the share accepted (2xx) and
the share refused as malformed (400: what the document allows and the API does not). The rest are the key's
limits (403: another user or tenant) and ids that do not exist (404), as they should be."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx

from memory import MemoryConfig, MemoryEngine
from proxy.app import create_app
from proxy.auth import hash_key
from proxy.bench.stub_upstream import StubUpstream
from proxy.settings import Settings

KEYS = {"fuzz-alice": {"tenant": "acme", "user": "alice"}, "fuzz-admin": {"tenant": "ops", "admin": True}}
HOSTILE = [None, "Bearer not-a-key", "Bearer " + "x" * 8192, "Basic fuzz-alice", "Bearer fuzz-alice\tadmin"]
USERS = [("acme", "alice"), ("ops", "fuzz-admin")]


def draw_cases(document: dict[str, Any], per_operation: int) -> list[tuple[Any, bool]]:
    """(case, schema-valid) for every operation: ``per_operation`` positive and as many negative ones, the same on
    every run (Hypothesis derandomised)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_dict(document)
    cases: list[tuple[Any, bool]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            drawn: list[Any] = []  # noqa: B023 - read right after the draw below, in this iteration

            @settings(max_examples=per_operation, database=None, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(operation.as_strategy(generation_mode=mode))
            def draw(case: Any) -> None:
                drawn.append(case)

            try:
                draw()
            except Unsatisfiable:  # an operation whose schema admits no negative case
                pass
            cases += [(case, mode is GenerationMode.POSITIVE) for case in drawn[:per_operation]]
    return cases


def run(*, per_operation: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="memproxy-fuzz-") as tmp:
        return asyncio.run(_run(Path(tmp), per_operation))


async def _run(tmp: Path, per_operation: int) -> dict[str, Any]:
    keys_file = tmp / "keys.json"
    keys_file.write_text(json.dumps([{"sha256": hash_key(k), "name": k, **v} for k, v in KEYS.items()]))
    settings = Settings(upstream_url="http://stub.test/v1", default_model="stub-model", keys_file=keys_file,
                        data_dir=tmp / "proxy", cache_salt=False)  # fmt: skip
    engine = await MemoryEngine.open(MemoryConfig(data_dir=tmp / "mem"))
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=StubUpstream()), base_url="http://stub.test")
    app = create_app(settings, http_client=upstream, memory=engine)
    counts = {"requests": 0, "server_errors": 0, "state_changed_on_reject": 0, "valid_requests": 0,
              "valid_accepted": 0, "valid_refused_400": 0}  # fmt: skip
    failures: list[str] = []
    refused: dict[str, dict[str, Any]] = {}
    try:
        await engine.remember("I keep bees on the roof.", "alice", tenant="acme")
        cases = draw_cases(app.openapi(), per_operation)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
            before = await _state(engine, USERS)
            for index, (case, valid) in enumerate(cases):
                key = ["fuzz-alice", "fuzz-admin", *HOSTILE][index % (2 + len(HOSTILE))]
                status, said = await _send(client, case, key)
                counts["requests"] += 1
                if status >= 500:
                    counts["server_errors"] += 1
                    failures.append(f"{status} {case.method} {case.formatted_path}")
                if valid and key in KEYS:
                    counts["valid_requests"] += 1
                    counts["valid_accepted"] += status < 300
                    counts["valid_refused_400"] += status == 400
                    if status == 400:  # what the document allows and the API refuses: count, and one reason
                        name = f"{case.method} {case.path}"
                        refused.setdefault(name, {"count": 0, "example": said})["count"] += 1
                if 200 <= status < 300:
                    await app.state.chat_service.prefill.runner.drain()
                    await app.state.chat_memory.drain()
                    await engine.flush()
                    before = await settled_state(engine, USERS)
                    continue
                after = await _state(engine, USERS)
                if after != before:
                    counts["state_changed_on_reject"] += 1
                    failures.append(f"state changed by {status} {case.method} {case.formatted_path}")
                    before = after
    finally:
        await app.state.chat_memory.drain()
        await upstream.aclose()
        await engine.close()
    valid = counts.pop("valid_requests")
    accepted, refused_400 = counts.pop("valid_accepted"), counts.pop("valid_refused_400")
    return counts | {
        "operations": len({(c.method, c.path) for c, _ in cases}),
        "schema_valid_requests": valid,
        "schema_valid_accepted": round(accepted / valid, 3) if valid else None,
        "schema_valid_refused_400": round(refused_400 / valid, 3) if valid else None,
        "schema_valid_refused_400_by_operation": dict(sorted(refused.items(), key=lambda item: -item[1]["count"])),
        "failures": failures[:20],
    }


async def _send(client: httpx.AsyncClient, case: Any, key: str | None) -> tuple[int, str]:
    """The status, and the error's message if there is one."""
    headers = {k: str(v) for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if key is not None:
        headers["authorization"] = key if " " in key else f"Bearer {key}"
    body = getattr(case, "body", None)
    content: bytes | None = None
    if isinstance(body, bytes | str):
        content = body.encode() if isinstance(body, str) else body
        headers.setdefault("content-type", case.media_type or "application/octet-stream")
    elif body is not None and type(body).__name__ != "NotSet":
        content = json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    try:
        response = await client.request(
            case.method, case.formatted_path, params=case.query or None, headers=headers, content=content
        )
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError, ValueError):
        return 400, "not sendable as HTTP"  # the client library refuses it: nothing reached the proxy
    try:
        error = response.json().get("error") if response.status_code >= 400 else None
    except ValueError:
        error = None
    return response.status_code, str(error.get("message", ""))[:160] if isinstance(error, dict) else ""


async def settled_state(engine: MemoryEngine, users: list[tuple[str, str]]) -> tuple[int, int, str]:
    """The state once a request's after-effects are done (a recall's use bookkeeping lands a moment after the
    answer): the change log's position, the queue's depth, a digest of the ``(tenant, user)`` exports."""
    state = await _state(engine, users)
    while True:
        await asyncio.sleep(0.05)
        again = await _state(engine, users)
        if again == state:
            return state
        state = again


async def _state(engine: MemoryEngine, users: list[tuple[str, str]]) -> tuple[int, int, str]:
    exports = [await engine.export(user, tenant=tenant) for tenant, user in users]
    digest = hashlib.sha256(json.dumps(exports, sort_keys=True, default=str).encode()).hexdigest()
    return (await engine.index_stats()).store_seq, (await engine.write_queue_stats()).depth, digest
