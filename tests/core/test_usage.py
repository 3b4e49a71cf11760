"""Token meters read usage from each caller wire format without changing a byte."""

from __future__ import annotations

import json

import pytest

from llm_router_api.core.usage import Usage, meter_for
from llm_router_api.formats.anthropic.vocab import PROTOCOL as ANTHROPIC
from llm_router_api.formats.ollama.vocab import PROTOCOL as OLLAMA
from llm_router_api.schemas.calls import Protocol

pytestmark = pytest.mark.unit


def feed(protocol: Protocol, stream: bool, frames: list[bytes]) -> Usage:
    meter = meter_for(protocol, stream)
    for frame in frames:
        assert meter.feed(frame) is frame
    return meter.usage


def sse(obj: object, event: str = "") -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(obj) + "\n\n").encode()


def chunk(content: str | None) -> bytes:
    return sse({"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": content}}]})


def test_openai_bodies_and_streams() -> None:
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    assert feed(Protocol.OPENAI, False, [body[:10].encode(), body[10:].encode()]) == Usage(7, 3)
    frames = [chunk(""), chunk("a"), chunk(" b"), chunk(None), b"data: [DONE]\n\n"]
    assert feed(Protocol.OPENAI, True, frames) == Usage(0, 2)  # counted: no usage chunk
    usage = sse({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}})
    assert feed(Protocol.OPENAI, True, [*frames[:3], usage, frames[-1]]) == Usage(9, 4)
    # Frames split anywhere still count once.
    joined = b"".join(frames)
    assert feed(Protocol.OPENAI, True, [joined[:17], joined[17:40], joined[40:]]) == Usage(0, 2)


def test_ollama_last_line_or_counted_lines() -> None:
    lines = [json.dumps({"message": {"role": "assistant", "content": t}, "done": False})
             .encode() + b"\n" for t in ("x", "y", "z")]
    assert feed(OLLAMA, True, lines) == Usage(0, 3)
    done = json.dumps({"message": {"content": ""}, "done": True, "done_reason": "stop",
                       "prompt_eval_count": 11, "eval_count": 3}).encode() + b"\n"
    assert feed(OLLAMA, True, [*lines, done]) == Usage(11, 3)
    body = json.dumps({"response": "xyz", "done": True, "prompt_eval_count": 2,
                       "eval_count": 5}).encode()
    assert feed(OLLAMA, False, [body]) == Usage(2, 5)


def test_anthropic_message_start_and_delta() -> None:
    frames = [
        sse({"type": "message_start", "message": {"usage": {"input_tokens": 12,
                                                             "output_tokens": 1}}},
            "message_start"),
        sse({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
            "content_block_delta"),
        sse({"type": "message_delta", "usage": {"output_tokens": 6}}, "message_delta"),
    ]
    assert feed(ANTHROPIC, True, frames) == Usage(12, 6)
    body = json.dumps({"content": [], "usage": {"input_tokens": 4, "output_tokens": 2}})
    assert feed(ANTHROPIC, False, [body.encode()]) == Usage(4, 2)


def test_unreadable_answers_count_nothing() -> None:
    assert feed(Protocol.OPENAI, False, [b"not json"]) == Usage()
    assert feed(Protocol.OPENAI, True, [b'data: {"usage": {broken\n\n']) == Usage()
