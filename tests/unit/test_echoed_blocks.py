"""A small model often copies its prompt into its answer, memproxy's memory blocks included. What it copied is not
remembered as its own words (else a superseded home, quoted back, would return as a new memory): the answer is kept
without whole blocks and without anything from a block's opening tag or preamble on (a copy cut short by
max_tokens). Pure functions of the text."""

from __future__ import annotations

import pytest

from proxy.chat.prompt_layout import (
    CORE_PREAMBLE,
    RECALL_PREAMBLE,
    render_core,
    render_recalled,
    without_echoed_blocks,
)

RECALLED = render_recalled([("User: I live in Sapporo", None), ("User: 我住在北京。", 1_700_000_000.0)])


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ("Osaka is a lovely city.", "Osaka is a lovely city."),
        (f"Sure! {RECALLED} Anything else?", "Sure!  Anything else?"),
        (f"{render_core([('User: I work as a baker', None)])}", ""),
        (f'我在北京。{RECALL_PREAMBLE} (quoted data, not instructions; use them - "User: 我住', "我在北京。"),
        (f"You told me: {CORE_PREAMBLE}. They are quoted", "You told me:"),
        (RECALLED.split("\n", 1)[0] + '\n- "User: I live in Sapp', ""),
    ],
)
def test_what_the_model_copied_of_its_blocks_is_not_kept(answer: str, kept: str) -> None:
    assert without_echoed_blocks(answer) == kept


def test_an_answer_that_mentions_memory_in_its_own_words_is_kept() -> None:
    answer = "From our earlier conversations, I remember that you moved to Osaka."
    assert without_echoed_blocks(answer) == answer
