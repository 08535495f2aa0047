"""Memory in the loop against the real vLLM (CPU, SmolLM2): a fact told in one conversation is in the prompt vLLM
receives in the next one (no history sent), for that user only; the same through Open WebUI's headers; a moved
city supersedes the old one. Assertions are on the prompt vLLM received (the wiretap); how often the 135M model's
answer actually uses the facts is printed for the closing note, not asserted (a small model's wording varies).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest

from proxy.auth import hash_key
from proxy.bench.processes import ServerProcess
from tests.integration.conftest import MODEL, proxy_url, start_proxy
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.vllm

SERVICE_KEY = "it-service-key"  # trusted: a backend / Open WebUI naming its users
PERSONAL_KEY = "it-personal-key"  # one person's key: always its own user


@pytest.fixture(scope="module")
def memory_proxy(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("memory-proxy")
    keys = tmp / "keys.json"
    keys.write_text(json.dumps([
        {"sha256": hash_key(SERVICE_KEY), "tenant": "acme", "trusted": True, "name": "service"},
        {"sha256": hash_key(PERSONAL_KEY), "tenant": "acme", "user": "dave", "name": "dave"},
    ]))
    process: ServerProcess = start_proxy(f"{wiretap.url}/v1", tmp / "proxy.log", keys_file=str(keys), api_keys="")  # type: ignore[attr-defined]
    try:
        yield proxy_url(process)
    finally:
        process.stop()


def sdk(url: str, key: str = SERVICE_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def ask(client: openai.OpenAI, text: str, *, user: str | None = None, headers: dict[str, str] | None = None,
        remember: bool = True) -> tuple[str, dict[str, str]]:
    extra = dict(headers or {})
    if not remember:
        extra["X-Memproxy-Write"] = "off"
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=48, temperature=0,
        extra_headers=extra, **({"user": user} if user else {}),
    )
    reply = raw.parse()
    return reply.choices[0].message.content or "", {k: v for k, v in raw.headers.items() if k.startswith("x-memproxy")}


def prompt_after(wiretap: Wiretap, client: openai.OpenAI, text: str, must_contain: str, *, timeout_s: float = 90,
                 **kwargs) -> tuple[str, str]:
    """Ask (without remembering) until the prompt vLLM receives contains ``must_contain``: the exchange that told it
    is written in the background after its answer. Returns (prompt as vLLM saw it, answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer, _ = ask(client, text, remember=False, **kwargs)
        prompt = json.dumps(wiretap.chat_requests()[-1].json()["messages"], ensure_ascii=False)
        if must_contain in prompt or time.monotonic() > deadline:
            return prompt, answer
        time.sleep(1)


def test_facts_from_one_conversation_reach_the_next_for_that_user_only(memory_proxy: str, wiretap: Wiretap) -> None:
    client = sdk(memory_proxy)
    _, headers = ask(client, "My dog is called Pochi and I live in Sapporo.", user="alice")
    assert headers["x-memproxy-memory"] == "ok"
    prompt, answer = prompt_after(wiretap, client, "What is my dog called, and where do I live?", "Pochi", user="alice")
    assert "Pochi" in prompt and "Sapporo" in prompt
    assert "<memproxy-recalled-memories>" in prompt

    uses = 0
    questions = ["What is my dog's name?", "Which city do I live in?", "Tell me about my dog.",
                 "Where do I live?", "Do I have a pet? What is it called?"]
    for question in questions:
        answer, _ = ask(client, question, user="alice", remember=False)
        uses += ("Pochi" in answer) or ("Sapporo" in answer)
    print(f"\n[memory-loop] SmolLM2 used the recalled facts in {uses}/{len(questions)} answers")

    for other in (sdk(memory_proxy), sdk(memory_proxy, PERSONAL_KEY)):
        ask(other, "What is my dog called, and where do I live?", user="bob", remember=False)
        prompt = json.dumps(wiretap.chat_requests()[-1].json()["messages"])
        assert "Pochi" not in prompt and "Sapporo" not in prompt


def test_open_webui_headers_scope_the_memory(memory_proxy: str, wiretap: Wiretap) -> None:
    client = sdk(memory_proxy)
    owui = {"X-OpenWebUI-User-Id": "owui-user-7", "X-OpenWebUI-Chat-Id": "chat-1"}
    ask(client, "My dog is called Pochi and I live in Sapporo.", headers=owui)
    new_chat = {"X-OpenWebUI-User-Id": "owui-user-7", "X-OpenWebUI-Chat-Id": "chat-2"}
    prompt, _ = prompt_after(wiretap, client, "What is my dog called?", "Pochi", headers=new_chat)
    assert "Pochi" in prompt
    ask(client, "What is my dog called?", headers={"X-OpenWebUI-User-Id": "owui-user-8"}, remember=False)
    assert "Pochi" not in json.dumps(wiretap.chat_requests()[-1].json()["messages"])
    # Open WebUI's title request is answered but neither recalled into nor remembered.
    task = "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n<chat_history>\nUSER: hi\n</chat_history>"
    _, headers = ask(client, task, headers=new_chat)
    assert headers["x-memproxy-memory"] == "skipped"
    assert wiretap.chat_requests()[-1].json()["messages"] == [{"role": "user", "content": task}]


def test_moving_supersedes_the_old_city(memory_proxy: str, wiretap: Wiretap) -> None:
    client = sdk(memory_proxy)
    ask(client, "My dog is called Pochi and I live in Sapporo.", user="carol")
    prompt_after(wiretap, client, "Where do I live?", "Sapporo", user="carol")
    ask(client, "I moved to Osaka last week.", user="carol")
    prompt, _ = prompt_after(wiretap, client, "Where do I live now?", "Osaka", user="carol")
    assert "Osaka" in prompt
    # The user's "I live in Sapporo." statement is superseded: no longer recalled (the model's own earlier answer
    # may still mention Sapporo; that is a record of what it said, not a fact about carol).
    newest = wiretap.chat_requests()[-1].json()["messages"][-1]["content"]
    recalled = newest[newest.index("<memproxy-recalled-memories>"):newest.index("</memproxy-recalled-memories>")]
    user_lines = [line for line in recalled.splitlines() if line.startswith('- "User:')]
    assert any("I moved to Osaka" in line for line in user_lines), recalled
    assert not any("I live in Sapporo" in line for line in user_lines), recalled
