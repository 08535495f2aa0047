"""A Japanese user and a Chinese user through the real vLLM (CPU, SmolLM2) and the proxy's default memory (MiniLM plus
the multilingual lane), asserting on the prompt vLLM receives (issue 16):

- facts told in one chat are in the next chat's prompt, found by meaning (no word of the question in the fact);
- a move supersedes the old home (北京 → 上海 and 札幌 → 大阪: in test_assistant_chat_memory.py, with English);
- an English question finds a Japanese (and a Chinese) memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_assistant_chat_memory import Chat, serving
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def chat_proxy(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serving(wiretap, tmp_path_factory)


@pytest.mark.parametrize(
    "user, facts, question, expected",
    [
        ("ja-next-chat", ["子供の頃からピアノを習っています。", "毎朝コーヒーを飲みます。"], "楽器は何を弾きますか？",
         "ピアノ"),
        ("zh-next-chat", ["我养了一只叫小白的猫。", "我每天早上都喝咖啡。"], "我的宠物叫什么名字？", "小白"),
        ("ja-cross-lingual", ["去年の冬、札幌で雪まつりを見ました。", "毎朝コーヒーを飲みます。"],
         "Which festival did I see in winter?", "雪まつり"),
        ("zh-cross-lingual", ["我在上海的一家银行上班。", "我每天早上都喝咖啡。"], "Where do I work?", "银行"),
    ],
)
def test_what_was_told_in_one_chat_is_in_the_next_chats_prompt(
    chat_proxy: str, wiretap: Wiretap, user: str, facts: list[str], question: str, expected: str
) -> None:
    chat = Chat(chat_proxy, wiretap, user)
    for fact in facts:
        chat.say(fact)  # each in a chat of its own, answered by the model
    recalled = chat.recalled_for(question, expected)
    assert recalled and expected in recalled[0], recalled
