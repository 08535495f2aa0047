"""The SSE decoder and the stream transcript, without any network."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from proxy.chat.streaming import SSEDecoder, StreamTranscript, frame_sse
from tests.support.upstreams import chunk, sse

EVENTS = [sse(chunk("Hé")), b": keep-alive\n\n", sse(chunk("llo 世界", finish_reason="stop")), sse("[DONE]")]
STREAM = b"".join(EVENTS)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_bytes_yields_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    decoder = SSEDecoder()
    raws = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        raws.extend(event.raw for event in decoder.feed(STREAM[start:end]))
    assert raws == EVENTS
    assert decoder.pending == b""


def test_data_lines_comments_and_crlf() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b'event: x\r\ndata: {"a":\r\ndata:1}\r\n\r\n: ping\n\ndata: [DONE]\n\n')
    assert [event.data for event in events] == ['{"a":\n1}', None, "[DONE]"]


def test_a_partial_event_is_held_back() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {\"x\"") == []
    assert decoder.pending == b"data: {\"x\""
    [event] = decoder.feed(b": 1}\n\n")
    assert event.data == '{"x": 1}'


def test_transcript_collects_the_answer() -> None:
    transcript = StreamTranscript()
    for event in SSEDecoder().feed(STREAM):
        transcript.observe(event.data)
    assert transcript.content() == "Héllo 世界"
    assert transcript.finish_reasons == {0: "stop"}
    assert transcript.complete


def test_transcript_sees_upstream_errors_and_several_choices() -> None:
    transcript = StreamTranscript()
    for data in (
        json.dumps(chunk("a", index=0)),
        json.dumps(chunk("b", index=1)),
        "not json",
        json.dumps({"error": {"message": "boom"}}),
        "[DONE]",
    ):
        transcript.observe(data)
    assert transcript.content(0) == "a" and transcript.content(1) == "b"
    assert transcript.done and not transcript.complete


def test_frame_is_one_data_event() -> None:
    frame = frame_sse({"error": {"message": "ü"}})
    [event] = SSEDecoder().feed(frame)
    assert json.loads(event.data) == {"error": {"message": "ü"}}
