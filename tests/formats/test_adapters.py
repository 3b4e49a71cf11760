"""Provider adapters against the real stand-in: what goes upstream, what comes back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llm_router_api.errors import ClientError, UpstreamConnectError, UpstreamError
from llm_router_api.formats.anthropic.upstream import AnthropicAdapter, anthropic_request
from llm_router_api.formats.anthropic.vocab import PROTOCOL as ANTHROPIC
from llm_router_api.formats.ollama.upstream import OllamaAdapter, split_error
from llm_router_api.formats.ollama.vocab import PROTOCOL as OLLAMA
from llm_router_api.formats.openai.upstream import OpenAIAdapter
from llm_router_api.http.transport import Urllib3Transport
from llm_router_api.schemas.calls import Call, Op, Protocol
from llm_router_api.schemas.config import ProviderConfig
from standin import StandIn

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def transport() -> Iterator[Urllib3Transport]:
    pool = Urllib3Transport()
    yield pool
    pool.close()


def provider(upstream: StandIn, kind: str, **fields: Any) -> ProviderConfig:
    return ProviderConfig(id=f"p-{kind}", api_host=upstream.url, api_type=kind, **fields)


def call(protocol: Protocol, body: dict[str, Any], stream: bool = False,
         op: Op = Op.CHAT) -> Call:
    return Call(protocol, op, "public", body, body, stream)


def test_ollama_defaults_keep_alive_and_caller_wins(fresh_upstream: StandIn,
                                                    transport: Urllib3Transport) -> None:
    adapter = OllamaAdapter(transport, 5)
    config = provider(fresh_upstream, "ollama", keep_alive="10m",
                      options={"max_tokens": 9, "temperature": 0.1, "think": False})
    body = {"model": "public", "messages": USER, "options": {"temperature": 0.7}}
    list(adapter.forward(config, "up", call(OLLAMA, body)))
    sent = fresh_upstream.requests[-1]["json"]
    assert sent["options"] == {"num_predict": 9, "temperature": 0.7}
    assert (sent["keep_alive"], sent["think"], sent["model"], sent["stream"]) == (
        "10m", False, "up", False)


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def test_ollama_complete_stream_maps_chunks_and_usage(fresh_upstream: StandIn,
                                                      transport: Urllib3Transport) -> None:
    adapter = OllamaAdapter(transport, 5)
    request = {"messages": [{"role": "developer", "content": "sys"}, *USER], "stop": "X",
               "response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}}
    events = list(adapter.complete(provider(fresh_upstream, "ollama"), "up",
                                   call(Protocol.OPENAI, request, stream=True)))
    sent = fresh_upstream.requests[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "sys"}
    assert sent["options"] == {"stop": ["X"]} and sent["format"] == SCHEMA
    assert len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert json.loads(text) == {"a": 1}  # the stand-in answers the schema it was given
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0


def test_ollama_refuses_remote_image_urls(fresh_upstream: StandIn,
                                          transport: Urllib3Transport) -> None:
    image = {"role": "user", "content": [{"type": "image_url",
                                          "image_url": {"url": "https://x/cat.png"}}]}
    with pytest.raises(ClientError, match="base64"):
        list(OllamaAdapter(transport, 5).complete(provider(fresh_upstream, "ollama"), "up",
                                                  call(Protocol.OPENAI, {"messages": [image]})))


def test_ollama_stream_cut_short_raises(fresh_upstream: StandIn,
                                        transport: Urllib3Transport) -> None:
    fresh_upstream.set_behaviour(mode="die_mid_stream", die_after=2)
    frames = OllamaAdapter(transport, 5).forward(
        provider(fresh_upstream, "ollama"), "up",
        call(OLLAMA, {"messages": USER}, stream=True))
    assert b"tok0" in next(frames)
    with pytest.raises(UpstreamConnectError):
        list(frames)


def test_ollama_error_line_splits_the_block() -> None:
    block = b'{"done":false}\n{"error":"out of memory"}\n'
    assert split_error(block) == (b'{"done":false}\n', "out of memory")
    assert split_error(b'{"done":true}\n') == (b'{"done":true}\n', None)


def test_anthropic_headers_and_default_max_tokens(fresh_upstream: StandIn,
                                                  transport: Urllib3Transport) -> None:
    adapter = AnthropicAdapter(transport, 5)
    config = provider(fresh_upstream, "anthropic", api_token="sk-ant",
                      options={"presence_penalty": 1, "stop": ["Z"]})
    events = list(adapter.complete(config, "claude", call(Protocol.OPENAI, {"messages": USER})))
    sent = fresh_upstream.requests[-1]
    assert sent["headers"]["x-api-key"] == "sk-ant" and "authorization" not in sent["headers"]
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["json"]["max_tokens"] == 4096 and sent["json"]["stop_sequences"] == ["Z"]
    assert "presence_penalty" not in sent["json"]  # not an Anthropic field
    assert events[0]["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4 "
    assert adapter.health(config)


def test_anthropic_request_merges_turns_and_maps_tool_choice() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
             {"id": "c2", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]
    request = {"messages": [{"role": "system", "content": "s1"}, *USER,
                            {"role": "assistant", "content": None, "tool_calls": calls},
                            {"role": "tool", "tool_call_id": "c1", "content": "r1"},
                            {"role": "tool", "tool_call_id": "c2", "content": "r2"}],
               "tools": [{"type": "function", "function": {"name": "f"}}],
               "tool_choice": "required", "parallel_tool_calls": False, "stop": "END"}
    body = anthropic_request(request, "claude", False)
    assert body["system"] == "s1" and [m["role"] for m in body["messages"]] == [
        "user", "assistant", "user"]
    assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["c1", "c2"]
    assert body["messages"][1]["content"][1]["input"] == {"a": 1}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert body["stop_sequences"] == ["END"]


def test_anthropic_forward_stream_cut_short_raises(fresh_upstream: StandIn,
                                                   transport: Urllib3Transport) -> None:
    fresh_upstream.set_behaviour(mode="die_mid_stream", die_after=4)
    frames = AnthropicAdapter(transport, 5).forward(
        provider(fresh_upstream, "anthropic"), "claude",
        call(ANTHROPIC, {"messages": USER, "max_tokens": 5}, stream=True))
    with pytest.raises(UpstreamError):
        list(frames)


def test_anthropic_cannot_embed(fresh_upstream: StandIn, transport: Urllib3Transport) -> None:
    with pytest.raises(ClientError, match="embeddings"):
        next(AnthropicAdapter(transport, 5).complete(
            provider(fresh_upstream, "anthropic"), "claude",
            call(Protocol.OPENAI, {"input": "x"}, op=Op.EMBEDDING)))
    assert fresh_upstream.count == 0


def test_openai_complete_stream_asks_for_usage(fresh_upstream: StandIn,
                                               transport: Urllib3Transport) -> None:
    events = list(OpenAIAdapter(transport, 5).complete(
        provider(fresh_upstream, "vllm"), "up",
        call(OLLAMA, {"messages": USER, "stream": True}, stream=True)))
    assert fresh_upstream.requests[-1]["json"]["stream_options"] == {"include_usage": True}
    assert events[-1]["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize("adapter_type,path", [(OllamaAdapter, "/api/tags"),
                                               (AnthropicAdapter, "/v1/models")])
def test_health_paths(adapter_type: type[OllamaAdapter] | type[AnthropicAdapter], path: str,
                      fresh_upstream: StandIn, transport: Urllib3Transport) -> None:
    kind = "ollama" if adapter_type is OllamaAdapter else "anthropic"
    assert adapter_type(transport, 5).health(provider(fresh_upstream, kind))
    assert fresh_upstream.all_requests[-1]["path"] == path  # a GET: not a model call
