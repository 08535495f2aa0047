"""How ``bench chat-recall`` turns a LoCoMo-schema conversation into assistant chats and scores a prompt: pure
functions, on a small conversation written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memory.bench import locomo
from proxy.bench.chat_recall import Scores, _comes_from, _echoes, _norm, _plain
from proxy.bench.chat_replay import first_person, replays
from proxy.chat.prompt_layout import render_core, render_recalled

SAMPLE = {
    "sample_id": "conv-x",
    "conversation": {
        "speaker_a": "Ann",
        "speaker_b": "Bo",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Bo", "dia_id": "D1:1", "text": "Hi Ann!"},
            {"speaker": "Ann", "dia_id": "D1:2", "text": "Hey Bo, I adopted a dog called Rex yesterday."},
            {"speaker": "Bo", "dia_id": "D1:3", "text": "Lovely. What breed?"},
            {"speaker": "Bo", "dia_id": "D1:4", "text": "Send a photo!"},
            {"speaker": "Ann", "dia_id": "D1:5", "text": "A beagle. I also started pottery classes."},
        ],
        "session_2_date_time": "9:00 am on 20 May, 2023",
        "session_2": [
            {"speaker": "Ann", "dia_id": "D2:1", "text": "Pottery is going great, I made a bowl."},
            {"speaker": "Bo", "dia_id": "D2:2", "text": "Show me next time."},
        ],
    },
    "qa": [
        {"question": "What dog did Ann adopt?", "answer": "Rex", "evidence": ["D1:2"], "category": 4},
        {"question": "What did Ann make in her pottery class?", "answer": "bowl", "evidence": ["D2:1", "D1:5"],
         "category": 1},
        {"question": "What did Bo ask for?", "answer": "a photo", "evidence": ["D1:4"], "category": 4},
        {"question": "Is Ann a cat person?", "answer": "no", "evidence": ["D1:2"], "category": 5},
    ],
}


@pytest.fixture
def conversation(tmp_path: Path) -> locomo.Conversation:
    path = tmp_path / "sample.json"
    path.write_text(json.dumps([SAMPLE]))
    return locomo.load(path)[0]


def test_one_speaker_is_the_user_and_the_other_answers(conversation: locomo.Conversation) -> None:
    ann, bo = replays([conversation], [("Ann", "Bo")], "replay")
    assert (ann.user, bo.user) == ("conv-x-ann", "conv-x-bo")
    first, second, third = ann.exchanges
    assert first.history == ({"role": "assistant", "content": "Hi Ann!"},)  # the session's opening: context only
    assert first.message == "Hey Bo, I adopted a dog called Rex yesterday."
    assert first.answer == "Lovely. What breed?\nSend a photo!"
    assert second.history[-1] == {"role": "assistant", "content": first.answer} and second.answer == "Okay."
    assert third.history == () and third.message == "Pottery is going great, I made a bowl."  # a new chat per session
    assert first.timestamp == locomo.parse_session_time("1:56 pm on 8 May, 2023")
    assert [(ask.question, ask.gold) for ask in ann.asks] == [
        ("What dog did I adopt?", ("Hey Bo, I adopted a dog called Rex yesterday.",)),
        ("What did I make in my pottery class?", ("Pottery is going great, I made a bowl.",
                                                  "A beagle. I also started pottery classes.")),
    ]  # category 5 is never asked; Bo's turn is not Ann's evidence
    assert [ask.question for ask in bo.asks] == ["What did I ask for?"]


def test_noisy_answers_are_other_text_of_the_same_length(conversation: locomo.Conversation) -> None:
    other = locomo.Conversation("other", tuple(
        locomo.Turn(f"D1:{i}", "Zed", f"Unrelated sentence number {i} about weather.", 1, None) for i in range(30)
    ), ())  # fmt: skip
    ann = next(replays([conversation, other], [("Ann", "Bo"), ("Zed", "Yu")], "noisy"))
    reply = "Lovely. What breed?\nSend a photo!"
    assert ann.exchanges[0].answer != reply and ann.exchanges[0].answer.startswith("Unrelated sentence")
    assert abs(len(ann.exchanges[0].answer) - len(reply)) <= 2


@pytest.mark.parametrize(
    "question, name, asked",
    [
        ("What did Caroline research?", "Caroline", "What did I research?"),
        ("What is Caroline's identity?", "Caroline", "What is my identity?"),
        ("What does Melanie do to destress?", "Melanie", "What do I do to destress?"),
        ("Where has Melanie camped?", "Melanie", "Where have I camped?"),
        ("What gift did Melanie give to Caroline?", "Caroline", "What gift did Melanie give to me?"),
        ("Where is Caroline from?", "Caroline", "Where am I from?"),
        ("When did Melanie go camping with her family?", "Melanie", "When did I go camping with my family?"),
        ("What activities does Melanie partake in?", "Melanie", "What activities do I partake in?"),
    ],
)
def test_questions_are_asked_in_the_first_person(question: str, name: str, asked: str) -> None:
    other = "Melanie" if name == "Caroline" else "Caroline"
    assert first_person(question, name, other) == asked


def test_a_memory_comes_from_a_turn_when_it_is_the_turn_or_a_clause_of_it() -> None:
    turn = _norm("Hey Bo, I adopted a dog called Rex yesterday and I live in Paris.")
    assert _comes_from(_plain("User: Hey Bo, I adopted a dog called Rex yesterday and I live in Paris."), turn)
    assert _comes_from(_plain("User: I adopted a dog called Rex yesterday"), turn)  # a clause
    assert _comes_from(_plain("User: Hey Bo, I adopted a dog called Rex…"), turn)  # clipped
    assert _comes_from(_plain("User: Hey Bo, I adopted a dog called Rex yesterday I live in Paris."), turn)  # "and" cut
    assert not _comes_from(_plain("User: Paris."), turn)  # too short to say which turn it is
    assert not _comes_from(_plain("User: I adopted a cat"), turn)


def test_an_echo_is_the_question_asked_before() -> None:
    assert _echoes("User: What dog did I adopt?", "What dog did I adopt?")
    assert _echoes("User: Hey, what dog did I adopt again?", "What dog did I adopt?")
    assert not _echoes("User: I adopted a dog called Rex.", "What dog did I adopt?")
    long_statement = "User: What dog did I adopt, you ask? A beagle called Rex, from the shelter on Main Street, last May?"
    assert not _echoes(long_statement, "What dog did I adopt?")  # an answer that happens to end with a question


def test_scores_read_the_prompt_the_upstream_received(conversation: locomo.Conversation) -> None:
    ann = next(replays([conversation], [("Ann", "Bo")], "replay"))
    block = render_recalled([("User: Hey Bo, I adopted a dog called Rex yesterday.", None),
                             ("Assistant: Lovely. What breed?\nSend a photo!", None)])  # fmt: skip
    core = render_core([("User: A beagle.", None)])
    scores = Scores()
    scores.add(ann.asks[0], [{"role": "system", "content": core}, {"role": "user", "content": f"{block}\n\nQ"}], ann)
    scores.add(ann.asks[1], [{"role": "user", "content": "nothing recalled"}], ann)
    report = scores.report()
    assert report["by_category"] == {"4": {"evidence_in_prompt": 1.0, "n": 1}, "1": {"evidence_in_prompt": 0.0, "n": 1}}
    assert report["evidence_in_prompt"] == 0.5 and report["questions"] == 2
    assert report["assistant_share"] == round(1 / 3, 4) and report["echoes"] == 0
    assert report["injected_tokens_per_chat"] > 0
