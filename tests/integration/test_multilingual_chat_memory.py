"""A Japanese user and a Chinese user through the real vLLM (CPU, SmolLM2) and the proxy's default memory (MiniLM plus
the multilingual lane), asserting on the prompt vLLM receives (issue 16):

- facts told in one chat are in the next chat's prompt, found by meaning (no word of the question in the fact);
- a move supersedes the old home: the question finds the new one, and the old one is history;
- an English question finds a Japanese (and a Chinese) memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxy.chat.prompt_layout import RECALL_PREAMBLE
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


@pytest.mark.parametrize(
    "user, old, new, question, place, old_place",
    [
        ("zh-move", "我住在北京。", "我搬到了上海", "我现在住在哪里？", "上海", "北京"),
        ("ja-move-2", "私は札幌に住んでいます", "大阪に引っ越しました", "今どこに住んでいますか？", "大阪", "札幌"),
    ],
)
def test_a_move_supersedes_the_old_home(
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
