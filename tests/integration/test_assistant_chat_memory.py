"""Memory in a real assistant chat, against the real vLLM (CPU, SmolLM2, which invents freely): the report of issue
15 replayed bullet by bullet, in English and in Japanese, asserting on the prompt vLLM receives.

- the user's fact, not the model's invented reply about it, is what comes back first (dog, job);
- a question asked before never comes back as the answer to itself;
- after a move the new home is what comes back, and the old one is history;
- stable profile facts reach the core block (with the scheduler running every second).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest

from proxy.auth import hash_key
from proxy.bench.processes import ServerProcess
from proxy.chat.prompt_layout import RECALL_PREAMBLE, shown_memories
from tests.integration.conftest import MODEL, proxy_url, start_proxy
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.vllm

KEY = "it-assistant-chat-key"
WAIT_S = 90.0


def serving(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory, **settings: str) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("assistant-chat")
    keys = tmp / "keys.json"
    keys.write_text(json.dumps([{"sha256": hash_key(KEY), "tenant": "acme", "trusted": True, "name": "service"}]))
    process: ServerProcess = start_proxy(
        f"{wiretap.url}/v1", tmp / "proxy.log", keys_file=str(keys), api_keys="",  # type: ignore[attr-defined]
        recall_timeout_ms="5000", **settings,
    )  # fmt: skip
    try:
        yield proxy_url(process)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def chat_proxy(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scheduler does not run during these tests: what the user told stays out of the core block."""
    yield from serving(wiretap, tmp_path_factory)


@pytest.fixture(scope="module")
def core_proxy(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scheduler runs every second."""
    yield from serving(wiretap, tmp_path_factory, scheduler_interval_s="1")


class Chat:
    def __init__(self, url: str, wiretap: Wiretap, user: str) -> None:
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=180)
        self.wiretap = wiretap
        self.user = user

    def say(self, text: str, *, remember: bool = True) -> dict[str, str]:
        """One message in a fresh chat, answered by the real model; memproxy's response headers."""
        raw = self.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=40, temperature=0, user=self.user,
            extra_headers={} if remember else {"X-Memproxy-Write": "off"},
        )  # fmt: skip
        raw.parse()
        return dict(raw.headers)

    def recalled_for(self, question: str, until: str) -> list[str]:
        """Ask (not remembered) until the recalled block holds ``until`` (writes land in the background after each
        answer); the recalled memories vLLM received, in their order."""
        deadline = time.monotonic() + WAIT_S
        while True:
            self.say(question, remember=False)
            recalled = [text for kind, text in self.shown() if kind == "recalled"]
            if any(until in text for text in recalled) or time.monotonic() > deadline:
                return recalled
            time.sleep(1)

    def shown(self) -> list[tuple[str, str]]:
        """(block, memory) pairs in the last chat prompt vLLM received."""
        messages = self.wiretap.chat_requests()[-1].json()["messages"]
        return shown_memories("\n".join(str(message.get("content", "")) for message in messages))


@pytest.mark.parametrize(
    "user, fact, question",
    [
        ("en-dog", "My dog is called Pochi", "What is my dog called?"),
        ("ja-dog", "私の犬はポチです", "私の犬の名前は何ですか？"),
        ("en-job", "I work as a nurse at a hospital", "What is my job?"),
        ("ja-job", "仕事は看護師です", "私の仕事は何ですか？"),
    ],
)
def test_the_users_fact_comes_first_not_the_models_invention(
    chat_proxy: str, wiretap: Wiretap, user: str, fact: str, question: str
) -> None:
    chat = Chat(chat_proxy, wiretap, user)
    chat.say(fact)  # the model answers with whatever it invents, and that is remembered too
    chat.say("Tell me something interesting about that.")
    recalled = chat.recalled_for(question, fact)
    assert recalled and recalled[0] == f"User: {fact}", recalled
    assert not any(text.startswith("Assistant:") for text in recalled[:1])


@pytest.mark.parametrize(
    "user, fact, question",
    [
        ("en-twice", "My dog is called Pochi", "What is my dog called?"),
        ("ja-twice", "私の犬はポチです", "私の犬の名前は何ですか？"),
    ],
)
def test_a_question_asked_before_never_answers_itself(
    chat_proxy: str, wiretap: Wiretap, user: str, fact: str, question: str
) -> None:
    chat = Chat(chat_proxy, wiretap, user)
    chat.say(fact)
    chat.say(question)  # asked, and remembered
    chat.say(question)  # asked again, and remembered
    recalled = chat.recalled_for(question, fact)
    assert recalled[0] == f"User: {fact}", recalled
    assert f"User: {question}" not in recalled


@pytest.mark.parametrize(
    "user, old, new, question, place, old_place",
    [
        ("en-move", "I live in Sapporo", "I moved to Osaka", "Where do I live now?", "Osaka", "Sapporo"),
        ("ja-move", "私は札幌に住んでいます", "大阪に引っ越しました", "今どこに住んでる？", "大阪", "札幌"),
        ("zh-move", "我住在北京。", "我搬到了上海", "我现在住在哪里？", "上海", "北京"),
    ],
)
def test_after_a_move_the_new_home_comes_back_and_the_old_one_is_history(
    chat_proxy: str, wiretap: Wiretap, user: str, old: str, new: str, question: str, place: str, old_place: str
) -> None:
    chat = Chat(chat_proxy, wiretap, user)
    chat.say(old)
    chat.recalled_for(question, old_place)  # the first home is known before the move is told
    chat.say(new)
    recalled = chat.recalled_for(question, place)
    assert recalled and place in recalled[0], recalled
    # The old home is history: no statement of the user's brings it back (the model's own replies may name it —
    # SmolLM2 invents freely — and are context, weighed down, never first).
    assert not any(old_place in text for text in recalled if text.startswith("User:")), recalled
    assert not any(RECALL_PREAMBLE in text for text in recalled), recalled  # a reply copying its prompt is not kept


def test_profile_facts_reach_the_core_block(core_proxy: str, wiretap: Wiretap) -> None:
    chat = Chat(core_proxy, wiretap, "en-core")
    chat.say("I live in Lisbon")
    chat.say("I work as a baker")
    deadline, attempt = time.monotonic() + WAIT_S, 0
    while True:
        attempt += 1  # a new conversation each time: a conversation keeps the core block it opened with
        headers = chat.say(f"Good morning! ({attempt})", remember=False)
        core = [text for kind, text in chat.shown() if kind == "core"]
        if int(headers.get("x-memproxy-core", "0")) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "User: I live in Lisbon" in core and "User: I work as a baker" in core, core
