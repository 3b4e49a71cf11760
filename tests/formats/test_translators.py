"""Every translator pair, without a server: caller format -> canonical -> upstream format and
back, tool calls included, plus each format's two-way vocabulary and a stream that ends early.

    pytest -m unit          (seconds)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from llm_router_api.core.observer import error_kind
from llm_router_api.errors import UpstreamProtocolError, UpstreamTruncated
from llm_router_api.formats.anthropic import upstream as anthropic_up
from llm_router_api.formats.anthropic.caller import AnthropicCaller
from llm_router_api.formats.anthropic.vocab import STOP_REASONS, finish_reason, stop_reason
from llm_router_api.formats.canonical import ChunkMaker
from llm_router_api.formats.ollama import upstream as ollama_up
from llm_router_api.formats.ollama.caller import OllamaCaller
from llm_router_api.formats.ollama.vocab import OPTIONS, done_reason
from llm_router_api.formats.openai import upstream as openai_up
from llm_router_api.formats.openai.caller import OpenAICaller
from llm_router_api.formats.registry import (
    API_TYPES,
    CALLERS,
    UPSTREAMS,
    forwards,
    protocol_for,
)
from llm_router_api.formats.upstream import line_blocks
from llm_router_api.schemas.calls import Op, Protocol
from llm_router_api.schemas.config import ProviderConfig

pytestmark = pytest.mark.unit

TOOL = {"type": "function", "function": {
    "name": "weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
# A canonical conversation with a tool round trip.
CANONICAL_CHAT = {
    "model": "m", "stream": False, "max_tokens": 50, "temperature": 0.2, "stop": ["END"],
    "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "weather"}},
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]}


def chunk_answer(model: str = "m") -> list[dict[str, Any]]:
    """A canonical stream: text, one tool call in two argument pieces, finish, usage."""
    maker = ChunkMaker(model)
    return [maker.piece("Hi"),
            maker.delta({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                         "function": {"name": "weather", "arguments": ""}}]}),
            maker.delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            maker.delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
            maker.piece("", "tool_calls"), maker.usage(7, 3)]


def whole_answer(model: str = "m") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Hi", "tool_calls": [CALL]}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


class Body:
    """An upstream body arriving in pieces (what ``line_blocks`` reads of a response)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    def chunks(self) -> Iterator[bytes]:
        yield from self.pieces


# -- the registry -----------------------------------------------------------------------------
def test_the_registry_is_the_one_list() -> None:
    assert list(CALLERS) == ["openai", "ollama", "anthropic", "responses"]
    assert API_TYPES == ("openai", "vllm", "ollama", "anthropic")
    assert UPSTREAMS["openai"].adapter is UPSTREAMS["vllm"].adapter
    assert forwards("vllm") == Protocol.OPENAI and forwards("nope") is None
    assert protocol_for("/v1/messages") == "anthropic"
    assert protocol_for("/api/chat") == "ollama"
    assert protocol_for("/x/tags", "/x") == "ollama"
    assert protocol_for("/v1/nothing") == Protocol.OPENAI


def test_unknown_api_type_is_refused_with_the_registrys_list() -> None:
    with pytest.raises(ValueError, match="'openai', 'vllm', 'ollama', 'anthropic'"):
        ProviderConfig(id="p", api_host="http://h:1", api_type="grpc")


# -- vocabularies read both ways --------------------------------------------------------------
def test_anthropic_stop_reasons_both_ways() -> None:
    assert [finish_reason(r) for r in ("end_turn", "stop_sequence", "max_tokens", "tool_use",
                                       "refusal", "pause_turn", None)] == [
        "stop", "stop", "length", "tool_calls", "content_filter", "stop", "stop"]
    assert [stop_reason(f) for f in ("stop", "length", "tool_calls", "function_call",
                                     "content_filter", None)] == [
        "end_turn", "max_tokens", "tool_use", "tool_use", "refusal", "end_turn"]
    for native, canonical in STOP_REASONS.to_native.items():
        assert STOP_REASONS.canonical(canonical) == native or native != "end_turn"


def test_ollama_options_and_done_reasons_both_ways() -> None:
    assert OPTIONS.to_canonical["num_predict"] == "max_tokens"
    assert OPTIONS.to_native["max_completion_tokens"] == "num_predict"
    assert OPTIONS.to_native["repetition_penalty"] == "repeat_penalty"
    assert (done_reason("length"), done_reason("tool_calls"), done_reason(None)) == \
        ("length", "stop", "stop")


# -- Anthropic caller <-> canonical <-> Anthropic upstream ------------------------------------
ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": "m", "max_tokens": 50, "system": "Be brief.", "stop_sequences": ["END"],
    "temperature": 0.2, "metadata": {"user_id": "u1"},
    "tools": [{"name": "weather", "description": "Weather in a city",
               "input_schema": TOOL["function"]["parameters"]}],  # type: ignore[index]
    "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "sunny"},
                                     {"type": "image", "source": {
                                         "type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}]},
    ]}


def test_anthropic_caller_to_canonical() -> None:
    canonical = AnthropicCaller().canonical(Op.CHAT, ANTHROPIC_REQUEST)
    assert canonical["messages"][0] == {"role": "system", "content": "Be brief."}
    assert canonical["messages"][2]["tool_calls"] == [{
        "id": "toolu_1", "type": "function",
        "function": {"name": "weather", "arguments": json.dumps({"city": "Oslo"})}}]
    assert canonical["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1",
                                        "content": "sunny"}
    assert canonical["messages"][4]["content"][0]["image_url"]["url"] == \
        "data:image/png;base64,iVBORw0KGgo="
    assert canonical["tools"] == [TOOL]
    assert canonical["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert canonical["parallel_tool_calls"] is False
    assert (canonical["stop"], canonical["user"]) == (["END"], "u1")


def test_anthropic_round_trip_through_canonical_keeps_the_request() -> None:
    canonical = AnthropicCaller().canonical(Op.CHAT, ANTHROPIC_REQUEST)
    back = anthropic_up.anthropic_request(canonical, "m", False)
    for key in ("system", "stop_sequences", "tools", "tool_choice", "metadata", "max_tokens",
                "temperature"):
        assert back[key] == ANTHROPIC_REQUEST[key], key
    assert back["messages"][1]["content"] == ANTHROPIC_REQUEST["messages"][1]["content"]
    assert back["messages"][2]["content"] == ANTHROPIC_REQUEST["messages"][2]["content"]


def test_canonical_to_anthropic_upstream() -> None:
    body = anthropic_up.anthropic_request(CANONICAL_CHAT, "up", True)
    assert (body["model"], body["stream"], body["system"]) == ("up", True, "Be brief.")
    assert body["tools"][0]["input_schema"] == TOOL["function"]["parameters"]  # type: ignore
    assert body["tool_choice"] == {"type": "tool", "name": "weather"}
    assert body["messages"][1] == {"role": "assistant", "content": [{
        "type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}]}
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1",
                                               "content": "sunny"}]


def test_anthropic_upstream_answer_to_canonical() -> None:
    message = {"type": "message", "stop_reason": "tool_use",
               "usage": {"input_tokens": 7, "output_tokens": 3},
               "content": [{"type": "text", "text": "Hi"},
                           {"type": "tool_use", "id": "toolu_2", "name": "weather",
                            "input": {"city": "Oslo"}}]}
    answer = anthropic_up.canonical_response(Op.CHAT, message, "up")
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "weather", "arguments": json.dumps({"city": "Oslo"})}
    assert answer["usage"]["total_tokens"] == 10
    with pytest.raises(UpstreamProtocolError):
        anthropic_up.canonical_response(Op.CHAT, {"content": "nope"}, "up")


def anthropic_stream() -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": {"usage": {"input_tokens": 7}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_3", "name": "weather", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 3}},
        {"type": "message_stop"}]


def test_anthropic_upstream_stream_to_canonical_chunks() -> None:
    chunks = list(anthropic_up.canonical_chunks(iter(anthropic_stream()), ChunkMaker("up")))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["content"] == "Hi"
    assert deltas[1]["tool_calls"][0] == {"index": 0, "id": "toolu_3", "type": "function",
                                          "function": {"name": "weather", "arguments": ""}}
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:4])
    assert json.loads(arguments) == {"city": "Oslo"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3,
                                   "total_tokens": 10}


def test_canonical_to_anthropic_caller_body_and_stream() -> None:
    caller = AnthropicCaller()
    body = orjson.loads(b"".join(caller.render(Op.CHAT, iter([whole_answer()]), False, "m")))
    assert body["stop_reason"] == "tool_use"
    assert body["content"][1] == {"type": "tool_use", "id": "call_1", "name": "weather",
                                  "input": {"city": "Oslo"}}
    assert body["usage"] == {"input_tokens": 7, "output_tokens": 3}
    frames = b"".join(caller.render(Op.CHAT, iter(chunk_answer()), True, "m")).decode()
    events = [json.loads(line[6:]) for line in frames.splitlines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "tool_use"]
    partial = "".join(e["delta"].get("partial_json", "") for e in events
                      if e["type"] == "content_block_delta")
    assert json.loads(partial) == {"city": "Oslo"}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


# -- Ollama caller <-> canonical <-> Ollama upstream ------------------------------------------
OLLAMA_REQUEST: dict[str, Any] = {
    "model": "m", "stream": False, "format": "json", "tools": [TOOL],
    "options": {"num_predict": 50, "temperature": 0.2, "repeat_penalty": 1.1},
    "messages": [
        {"role": "user", "content": "Weather in Oslo?", "images": ["iVBORw0KGgo="]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_name": "weather", "content": "sunny"},
    ]}


def test_ollama_caller_to_canonical() -> None:
    canonical = OllamaCaller().canonical(Op.CHAT, OLLAMA_REQUEST)
    assert (canonical["max_tokens"], canonical["repetition_penalty"]) == (50, 1.1)
    assert canonical["response_format"] == {"type": "json_object"}
    assert canonical["messages"][0]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,")
    call = canonical["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": json.dumps({"city": "Oslo"})}
    assert canonical["messages"][2]["tool_call_id"] == call["id"]  # the call it answers


def test_ollama_round_trip_through_canonical_keeps_the_request() -> None:
    canonical = OllamaCaller().canonical(Op.CHAT, OLLAMA_REQUEST)
    back = ollama_up.ollama_request(Op.CHAT, canonical, "m", False)
    assert back["options"] == OLLAMA_REQUEST["options"]
    assert (back["format"], back["tools"]) == ("json", [TOOL])
    assert back["messages"][0]["images"] == ["iVBORw0KGgo="]
    assert back["messages"][1]["tool_calls"] == OLLAMA_REQUEST["messages"][1]["tool_calls"]
    assert back["messages"][2]["tool_name"] == "weather"


def test_canonical_to_ollama_upstream() -> None:
    body = ollama_up.ollama_request(Op.CHAT, CANONICAL_CHAT, "up", True)
    assert body["options"] == {"num_predict": 50, "temperature": 0.2, "stop": ["END"]}
    assert body["messages"][2]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]
    assert body["messages"][3]["tool_name"] == "weather"


def test_ollama_upstream_answers_to_canonical() -> None:
    last = {"done": True, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 3,
            "message": {"role": "assistant", "content": "Hi", "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]}}
    answer = ollama_up.canonical_response(Op.CHAT, last, "up")
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == \
        json.dumps({"city": "Oslo"})
    cut = {"done": True, "done_reason": "length", "response": "", "eval_count": 1}
    assert ollama_up.canonical_response(Op.COMPLETION, cut, "up")["choices"][0][
        "finish_reason"] == "length"
    lines = [{"message": {"content": "Hi"}, "done": False}, last]
    chunks = list(ollama_up.canonical_chunks(Op.CHAT, iter(lines), "up"))
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks
             if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert calls == [[{"index": 0, "id": calls[0][0]["id"], "type": "function", "function": {
        "name": "weather", "arguments": json.dumps({"city": "Oslo"})}}]]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] == 10


def test_canonical_to_ollama_caller_body_and_stream() -> None:
    caller = OllamaCaller()
    body = orjson.loads(b"".join(caller.render(Op.CHAT, iter([whole_answer()]), False, "m")))
    assert body["message"]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]
    assert (body["done"], body["done_reason"], body["eval_count"]) == (True, "stop", 3)
    lines = [orjson.loads(x) for x in
             b"".join(caller.render(Op.CHAT, iter(chunk_answer()), True, "m")).splitlines()]
    assert lines[0]["message"]["content"] == "Hi"
    assert lines[1]["message"]["tool_calls"] == body["message"]["tool_calls"]
    assert lines[-1]["done"] is True and lines[-1]["prompt_eval_count"] == 7


# -- OpenAI caller <-> canonical <-> OpenAI / vLLM upstream -----------------------------------
def provider(kind: str, **options: Any) -> ProviderConfig:
    return ProviderConfig(id="p", api_host="http://h:1", api_type=kind, options=options)


def test_openai_caller_is_the_canonical_and_upstream_body_keeps_tools() -> None:
    request = {**CANONICAL_CHAT, "top_k": 5}
    assert OpenAICaller().canonical(Op.CHAT, request) is request
    for kind, has_top_k in (("openai", False), ("vllm", True)):
        body = openai_up.upstream_body(provider(kind, temperature=0.9), "up", request)
        assert ("top_k" in body) is has_top_k
        assert body["temperature"] == 0.2  # the caller's value wins over the provider's
        assert body["messages"][2]["tool_calls"] == [CALL] and body["tools"] == [TOOL]


def test_canonical_to_openai_caller_stream_keeps_one_id_and_drops_usage_unasked() -> None:
    caller = OpenAICaller()
    frames = b"".join(caller.render(Op.CHAT, iter(chunk_answer("up")), True, "m")).decode()
    events = [json.loads(x[6:]) for x in frames.splitlines()
              if x.startswith("data: {")]
    assert len({e["id"] for e in events}) == 1 and {e["model"] for e in events} == {"m"}
    assert all(e["choices"] for e in events)  # no usage chunk: the caller did not ask
    assert frames.endswith("data: [DONE]\n\n")
    asked = {"stream_options": {"include_usage": True}}
    frames = b"".join(caller.render(Op.CHAT, iter(chunk_answer()), True, "m", asked)).decode()
    assert '"usage"' in frames


# -- a stream that ends before its last event -------------------------------------------------
@pytest.mark.parametrize("blocks,body", [
    (openai_up.sse_blocks, b'data: {"choices": []}\n\n'),
    (ollama_up.ndjson_blocks, b'{"message": {"content": "a"}, "done": false}\n'),
    (anthropic_up.sse_blocks, b'event: message_start\ndata: {"type": "message_start"}\n\n'),
])
def test_a_cut_stream_is_truncated_not_a_connection_failure(blocks: Any, body: bytes) -> None:
    with pytest.raises(UpstreamTruncated) as caught:
        list(blocks(line_blocks(Body(body))))
    assert error_kind(caught.value) == "protocol"


def test_cut_streams_through_the_translators_are_truncated_too() -> None:
    with pytest.raises(UpstreamTruncated):
        list(anthropic_up.canonical_chunks(iter(anthropic_stream()[:-1]), ChunkMaker("up")))
    with pytest.raises(UpstreamTruncated):
        list(ollama_up.canonical_chunks(Op.CHAT, iter([{"message": {"content": "a"}}]), "up"))
