"""The Extractor contract (memory/writes/extraction.py), run against every implementation in CASES.

The LLM extractor talks to :class:`ScriptedVllm`, an ``httpx.MockTransport`` answering as vLLM's chat completions
do under a JSON-schema ``response_format`` (guided decoding: the content is JSON that fits the schema), with
scripted facts: this suite checks the interface, not a model. The real vLLM (CPU, SmolLM2) runs in
tests/integration/test_llm_extraction.py; how the LLM extractor reads each kind of bad answer is in
test_llm_extraction.py. A new implementation is one line in CASES.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from memory.models import MemoryKind, Scope
from memory.writes.extraction import DeterministicExtractor, Extraction, Extractor
from memory.writes.jobs import WriteJob
from memory.writes.llm_extraction import LLMExtractor

SCOPE = Scope("acme", "hanako")
VLLM_URL = "http://vllm.test/v1"


class ScriptedVllm:
    """``POST /v1/chat/completions`` as vLLM answers it with a ``json_schema`` response format; the facts are
    scripted: one per user turn of the exchange (the turn's own words), dated with the exchange's date.
    ``failure`` makes it fail as a server can: ``"refused"``, ``"timeout"``, ``"http-500"``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failure: str | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.failure == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        if self.failure == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if request.url.path != "/v1/chat/completions":
            return _error(404, "Not Found")
        body = json.loads(request.content)
        self.requests.append(body)
        if self.failure == "http-500":
            return _error(500, "EngineCore encountered an issue.")
        if body.get("response_format", {}).get("type") != "json_schema":
            return _error(400, "this scripted server answers guided-JSON requests only")
        document = json.loads(body["messages"][-1]["content"].removeprefix("<exchange>\n").removesuffix("\n</exchange>"))
        facts = [
            {"text": turn["content"][:500], "kind": "fact", "importance": 0.6, "entities": [],
             "event_date": document["date"]}
            for turn in document["turns"]
            if turn["role"] == "user" and turn["content"].strip()
        ]  # fmt: skip
        content = json.dumps({"facts": facts, "relations": []})
        return httpx.Response(200, json={
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 200, "completion_tokens": 40, "total_tokens": 240},
        })  # fmt: skip


def _error(status: int, message: str) -> httpx.Response:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    return httpx.Response(status, json={"error": {"message": message, "type": kind, "param": None, "code": status}})


@dataclass(frozen=True)
class ExtractorCase:
    name: str
    build: Callable[[httpx.AsyncClient], Extractor]
    """The extractor, given a client to the scripted model server that it owns, as the factory's does (one that
    asks no model ignores it)."""
    asks_model: bool


CASES = [
    ExtractorCase("deterministic", lambda client: DeterministicExtractor(), asks_model=False),
    ExtractorCase(
        "llm",
        lambda client: LLMExtractor(client, VLLM_URL, "small-model", timeout_s=2.0, owns_client=True),
        asks_model=True,
    ),
]
MODEL_CASES = [case for case in CASES if case.asks_model]


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request: pytest.FixtureRequest) -> ExtractorCase:
    return request.param


@pytest.fixture
def model() -> ScriptedVllm:
    return ScriptedVllm()


@pytest.fixture
async def extractor(case: ExtractorCase, model: ScriptedVllm) -> AsyncIterator[Extractor]:
    async with httpx.AsyncClient(transport=model.transport()) as client:
        built = case.build(client)
        yield built
        await built.close()


def exchange(user: str = "My dog is called Pochi and I live in Sapporo.", *, ids: bool = True) -> WriteJob:
    messages = [
        {"id": "s1", "role": "system", "content": "You are a kind assistant. Secret rules."},
        {"id": "u1", "role": "user", "content": user},
    ]
    answer = {"id": "a1", "content": "What a lovely name!"}
    if not ids:
        messages, answer = [{k: v for k, v in m.items() if k != "id"} for m in messages], {"content": answer["content"]}
    return WriteJob.for_exchange(SCOPE, messages, answer, conversation_id="c1", timestamp=1_700_000_000.0)


def total(stats: dict[str, int]) -> int:
    return sum(stats.values())


async def test_an_exchange_keeps_its_turns_with_their_provenance(case: ExtractorCase, extractor: Extractor) -> None:
    before = extractor.stats()
    result = await extractor.extract(exchange())

    assert isinstance(result, Extraction) and result.memories
    sources = {source for memory in result.memories for source in memory.source_ids}
    assert sources == {"u1", "a1"}  # both turns kept, and nothing from elsewhere (the system prompt: s1)
    assert all("Secret" not in memory.text for memory in result.memories)
    after = extractor.stats()
    assert (total(after) - total(before), after.get("ok", 0) - before.get("ok", 0)) == (case.asks_model,) * 2


async def test_turns_without_ids_get_provenance_from_the_job(extractor: Extractor) -> None:
    job = exchange(ids=False)
    result = await extractor.extract(job)
    assert result.memories
    assert all(source.startswith(job.job_id) for memory in result.memories for source in memory.source_ids)


async def test_blank_turns_and_system_prompts_leave_nothing(extractor: Extractor) -> None:
    result = await extractor.extract(exchange("  \n\t "))
    assert [source for memory in result.memories for source in memory.source_ids] == ["a1"]
    job = WriteJob.for_exchange(SCOPE, [{"id": "s1", "role": "system", "content": "Be brief."}], {"content": " "})
    assert await extractor.extract(job) == Extraction()


async def test_an_explicit_memory_is_kept_as_given_and_no_model_is_asked(
    extractor: Extractor, model: ScriptedVllm
) -> None:
    before = extractor.stats()
    job = WriteJob.for_memory(
        SCOPE,
        "  Hanako's favourite tea is Gyokuro from Uji.  ",
        kind="preference",
        importance=0.9,
        metadata={"category": "food"},
        event_time=1_600_000_000.0,
        source_ids=["m7"],
    )
    [memory] = (await extractor.extract(job)).memories
    assert (memory.text, memory.kind, memory.importance) == (
        "Hanako's favourite tea is Gyokuro from Uji.", MemoryKind.PREFERENCE, 0.9
    )
    assert (memory.event_time, memory.source_ids, memory.metadata) == (1_600_000_000.0, ("m7",), {"category": "food"})
    assert (await extractor.extract(WriteJob.for_memory(SCOPE, "   "))).memories == []
    assert extractor.stats() == before and model.requests == []


async def test_the_same_job_twice_gives_the_same_extraction(extractor: Extractor) -> None:
    for job in (exchange(), WriteJob.for_memory(SCOPE, "I live in Sapporo", kind="profile")):
        assert await extractor.extract(job) == await extractor.extract(job)


async def test_malformed_jobs_are_refused(extractor: Extractor) -> None:
    malformed = [
        WriteJob("j1", SCOPE, "memory", {"text": None}),
        WriteJob.for_memory(SCOPE, "I live in Sapporo", importance=2.0),
        WriteJob("j2", SCOPE, "exchange", {"messages": "not a list", "answer": "hi"}),
    ]
    for job in malformed:
        with pytest.raises(ValueError):
            await extractor.extract(job)


async def test_stats_are_a_snapshot_of_counts_that_only_grow(extractor: Extractor) -> None:
    before = extractor.stats()
    before["made-up"] = 7
    assert "made-up" not in extractor.stats()  # a new dict each time
    del before["made-up"]
    for job in (exchange(), exchange("I moved to Osaka."), WriteJob.for_memory(SCOPE, "I like tea")):
        await extractor.extract(job)
    after = extractor.stats()
    assert all(isinstance(name, str) and isinstance(count, int) and count >= 0 for name, count in after.items())
    assert all(after.get(name, 0) >= count for name, count in before.items())


async def test_close_is_safe_twice(extractor: Extractor) -> None:
    await extractor.extract(exchange())
    await extractor.close()
    await extractor.close()


# --- extractors that ask a model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.name)
@pytest.mark.parametrize("failure", ["refused", "timeout", "http-500"])
async def test_without_a_usable_answer_the_episodes_stay_and_the_fallback_is_counted(
    extractor: Extractor, model: ScriptedVllm, failure: str
) -> None:
    model.failure = failure
    before = extractor.stats()
    job = exchange()

    result = await extractor.extract(job)

    assert result == await DeterministicExtractor().extract(job)
    after = extractor.stats()
    grown = {name for name, count in after.items() if count > before.get(name, 0)}
    assert total(after) == total(before) + 1 and len(grown) == 1 and grown.pop().startswith("fallback_")


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.name)
async def test_a_usable_answer_adds_to_the_episodes(extractor: Extractor, model: ScriptedVllm) -> None:
    job = exchange()
    episodes = (await DeterministicExtractor().extract(job)).memories
    result = await extractor.extract(job)
    assert result.memories[: len(episodes)] == episodes
    assert [memory.text for memory in result.memories[len(episodes) :]] == [job.payload["messages"][0]["content"]]
    assert len(model.requests) == 1
