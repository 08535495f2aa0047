"""Cues read off the query: the periods it names and the speakers it names. The pure parsers on plain strings, then
recall end to end on the real engine (ONNX MiniLM, SQLite): a memory of the named day or speaker outranks an
equally worded one of another day or speaker."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from memory.engine import MemoryEngine
from memory.recall.presets import get_preset
from memory.recall.query_cues import SLACK_AFTER_S, SLACK_BEFORE_S, TimeWindow, named_speakers, time_windows

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=timezone.utc).timestamp()


def day(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()


def spans(query: str) -> list[tuple[str, str]]:
    def show(at: float) -> str:
        return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d")

    return [(show(w.start), show(w.end)) for w in time_windows(query, NOW)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What did Maria do on 31 July, 2023?", [("2023-07-31", "2023-08-01")]),
        ("the 5th of May 2024", [("2024-05-05", "2024-05-06")]),
        ("Was it on July 31st, 2023?", [("2023-07-31", "2023-08-01")]),
        ("log from 2023-07-31", [("2023-07-31", "2023-08-01")]),
        ("What happened in August 2023?", [("2023-08-01", "2023-09-01")]),
        ("plans for December 2024", [("2024-12-01", "2025-01-01")]),
        ("anything in 2022?", [("2022-01-01", "2023-01-01")]),
        # A date without a year: the year named elsewhere in the query, else the latest one not after now.
        ("between August 11 and August 15 2023", [("2023-08-11", "2023-08-12"), ("2023-08-15", "2023-08-16")]),
        ("When did Melanie go camping in June?", [("2026-06-01", "2026-07-01")]),
        ("What did I eat on December 3?", [("2025-12-03", "2025-12-04")]),
        ("What did I say yesterday?", [("2026-11-23", "2026-11-24")]),
        ("today's plan", [("2026-11-24", "2026-11-25")]),
        ("3 days ago", [("2026-11-21", "2026-11-22")]),
        ("two weeks ago", [("2026-11-07", "2026-11-14")]),
        ("last week", [("2026-11-10", "2026-11-25")]),
    ],
)
def test_time_windows(query: str, expected: list[tuple[str, str]]) -> None:
    assert spans(query) == expected


@pytest.mark.parametrize(
    "query",
    ["I may go hiking", "we march 10 miles", "What is my dog called?", "", "call me at 2023 Main Street", "room 31"],
)
def test_no_period_named(query: str) -> None:
    # "may" and "march" are months only capitalised; a number that looks like a year needs "in"/"of" or a month.
    assert time_windows(query, NOW) == []


def test_a_window_matches_with_slack_around_it() -> None:
    window = TimeWindow(day("2023-07-31"), day("2023-08-01"))
    assert window.matches(day("2023-07-31") + 3600)
    assert window.matches(day("2023-07-31") - SLACK_BEFORE_S)
    assert not window.matches(day("2023-07-31") - SLACK_BEFORE_S - 1)
    assert window.matches(day("2023-08-01") + SLACK_AFTER_S - 1)
    assert not window.matches(day("2023-08-01") + SLACK_AFTER_S)


def test_named_speakers() -> None:
    speakers = ["Joanna", "Nate", "Mary Ann", "User", None, 7]
    assert named_speakers("What is one of Joanna's favorite movies?", speakers) == {"Joanna"}
    assert named_speakers("what did mary ann and NATE cook", speakers) == {"Mary Ann", "Nate"}
    assert named_speakers("Did Mary call?", speakers) == set()  # every part of the name, as whole words
    assert named_speakers("Natalie's birthday", speakers) == set()
    assert named_speakers("What did the user say?", speakers) == {"User"}


async def test_a_named_day_lifts_the_memory_of_that_day(engine: MemoryEngine) -> None:
    for text, at in (
        ("Maria: I volunteered at the homeless shelter today", day("2023-07-31") + 3600),
        ("Maria: I volunteered at the animal shelter today", day("2023-03-02") + 3600),
    ):
        await engine.remember(text, user_id="maria", kind="episode", event_time=at)
    scope = engine.scope("maria")
    preset = get_preset(None)
    dated = await engine.recaller.recall(scope, "Where did Maria volunteer on 31 July, 2023?", preset)
    assert dated[0].memory.text.startswith("Maria: I volunteered at the homeless")
    assert [hit.signals["time"] for hit in dated] == [1.0, 0.0]
    # The same query naming the other day turns the order round; naming no day gives no time signal at all.
    other = await engine.recaller.recall(scope, "Where did Maria volunteer on 2 March, 2023?", preset)
    assert other[0].memory.text.startswith("Maria: I volunteered at the animal")
    undated = await engine.recaller.recall(scope, "Where did Maria volunteer?", preset)
    assert all(hit.signals["time"] == 0.0 for hit in undated)


async def test_a_named_speaker_lifts_that_speakers_turns(engine: MemoryEngine) -> None:
    for speaker, said in (("Nate", "I love making coconut milk ice cream"), ("Joanna", "Coconut milk ice cream is my thing")):
        await engine.remember(
            f"{speaker}: {said}",
            user_id="pair",
            kind="episode",
            metadata={"speaker": speaker},
        )
    scope = engine.scope("pair")
    for speaker in ("Nate", "Joanna"):
        hits = await engine.recaller.recall(scope, f"What ice cream does {speaker} like making?", get_preset(None))
        assert hits[0].memory.metadata["speaker"] == speaker
        assert hits[0].signals["speaker"] == 1.0 and hits[1].signals["speaker"] == 0.0
