"""Well-formed but wrong input is a 400 naming the field, never a 500 (SPEC §13): the canonical
check every translated call passes (``schemas.checks``), the caller request models, and the
translators themselves on whatever passes — plus a few end to end under gunicorn + gevent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydantic import BaseModel, ValidationError

from llm_router_api.endpoints.base import validation_error
from llm_router_api.errors import ValidationFailed
from llm_router_api.protocols.anthropic import AnthropicProtocol
from llm_router_api.protocols.ollama import OllamaProtocol
from llm_router_api.providers.anthropic import anthropic_request
from llm_router_api.providers.ollama import ollama_request
from llm_router_api.schemas.calls import Op
from llm_router_api.schemas.checks import check_request
from llm_router_lib.data_models.anthropic import AnthropicMessagesRequest
from llm_router_lib.data_models.ollama import OllamaChatRequest
from standin import StandIn
from tests.support.procs import Gateway, write_config

USER = [{"role": "user", "content": "hi"}]
GOOD_CHAT: dict[str, Any] = {
    "model": "m", "stream": True, "max_tokens": 5, "temperature": 0.2, "stop": ["x"],
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                                                 "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
}

BAD_CANONICAL = [
    (Op.CHAT, {"stop": 5}, "stop"),
    (Op.CHAT, {"stop": ["a", 1]}, "stop"),
    (Op.CHAT, {"tools": "x"}, "tools"),
    (Op.CHAT, {"tools": ["x"]}, "tools.0"),
    (Op.CHAT, {"tools": [{"function": "x"}]}, "tools.0.function"),
    (Op.CHAT, {"tools": [{"function": {"name": 1}}]}, "tools.0.function.name"),
    (Op.CHAT, {"tools": [{"function": {"name": "f", "parameters": "x"}}]},
     "tools.0.function.parameters"),
    (Op.CHAT, {"tool_choice": 3}, "tool_choice"),
    (Op.CHAT, {"tool_choice": {"function": "f"}}, "tool_choice.function"),
    (Op.CHAT, {"max_tokens": "many"}, "max_tokens"),
    (Op.CHAT, {"max_tokens": True}, "max_tokens"),
    (Op.CHAT, {"temperature": "hot"}, "temperature"),
    (Op.CHAT, {"top_k": 1.5}, "top_k"),
    (Op.CHAT, {"stream": "yes"}, "stream"),
    (Op.CHAT, {"user": {"id": 1}}, "user"),
    (Op.CHAT, {"response_format": "json"}, "response_format"),
    (Op.CHAT, {"response_format": {"type": "json_schema", "json_schema": "s"}},
     "response_format.json_schema"),
    (Op.CHAT, {"response_format": {"type": "json_schema", "json_schema": {"schema": []}}},
     "response_format.json_schema.schema"),
    (Op.CHAT, {"messages": "hi"}, "messages"),
    (Op.CHAT, {"messages": ["hi"]}, "messages.0"),
    (Op.CHAT, {"messages": [{"role": 1, "content": "x"}]}, "messages.0.role"),
    (Op.CHAT, {"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    (Op.CHAT, {"messages": [{"role": "user", "content": ["x"]}]}, "messages.0.content.0"),
    (Op.CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages.0.content.0.text"),
    (Op.CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": 5}]}]}, "messages.0.content.0.image_url"),
    (Op.CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": 5}}]}]},
     "messages.0.content.0.image_url.url"),
    (Op.CHAT, {"messages": [{"role": "assistant", "tool_calls": "x"}]},
     "messages.0.tool_calls"),
    (Op.CHAT, {"messages": [{"role": "assistant", "tool_calls": [{"function": "x"}]}]},
     "messages.0.tool_calls.0.function"),
    (Op.CHAT, {"messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": 5}}]}]},
     "messages.0.tool_calls.0.function.arguments"),
    (Op.CHAT, {"messages": [{"role": "tool", "tool_call_id": 5, "content": "x"}]},
     "messages.0.tool_call_id"),
    (Op.COMPLETION, {"prompt": 5}, "prompt"),
    (Op.COMPLETION, {"prompt": "x", "images": "abc"}, "images"),
    (Op.COMPLETION, {"prompt": "x", "suffix": 5}, "suffix"),
    (Op.EMBEDDING, {"input": 5}, "input"),
    (Op.EMBEDDING, {"input": "x", "dimensions": "8"}, "dimensions"),
]


@pytest.mark.parametrize("op,change,param", BAD_CANONICAL)
def test_canonical_check_names_the_field(op: Op, change: dict[str, Any], param: str) -> None:
    base: dict[str, Any] = {Op.CHAT: {"messages": USER}, Op.COMPLETION: {"prompt": "x"},
                            Op.EMBEDDING: {"input": "x"}}[op]
    with pytest.raises(ValidationFailed) as caught:
        check_request(op, {"model": "m", **base, **change})
    assert caught.value.param == param and caught.value.status == 400
    assert param in caught.value.message


def test_a_rich_valid_request_passes_and_translates() -> None:
    check_request(Op.CHAT, GOOD_CHAT)
    assert ollama_request(Op.CHAT, GOOD_CHAT, "up", True)["messages"][2]["tool_calls"]
    assert anthropic_request(GOOD_CHAT, "up", True)["tool_choice"]["name"] == "f"


def first_param(model: type[BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return str(validation_error(caught.value).param)


@pytest.mark.parametrize("messages,param", [
    ([{"role": "assistant", "tool_calls": [{"function": "x"}]}],
     "messages.0.tool_calls.0.function"),
    ([{"role": "assistant", "tool_calls": ["x"]}], "messages.0.tool_calls.0"),
    ([{"role": "assistant", "tool_calls": [{"function": {"name": 5}}]}],
     "messages.0.tool_calls.0.function.name"),
    ([{"role": "user", "content": "x", "images": [5]}], "messages.0.images.0"),
])
def test_ollama_caller_fields_are_typed(messages: list[Any], param: str) -> None:
    assert first_param(OllamaChatRequest, {"model": "m", "messages": messages}) == param


@pytest.mark.parametrize("change,param", [
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages.0.content.0.text"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]},
     "messages.0.content.0.source"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]},
     "messages.0.content.0.input"),
    ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
     "messages.0.content.0.type"),
    ({"system": [{"type": "text", "text": 5}]}, "system.0.text"),
    ({"tools": "x"}, "tools"),
    ({"tools": [{"name": "f", "input_schema": "x"}]}, "tools.0.input_schema"),
    ({"metadata": "x"}, "metadata"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"stop_sequences": 5}, "stop_sequences"),
])
def test_anthropic_caller_fields_are_typed(change: dict[str, Any], param: str) -> None:
    body = {"model": "m", "messages": USER, **change}
    assert first_param(AnthropicMessagesRequest, body) == param


def test_valid_caller_requests_give_a_canonical_that_passes() -> None:
    anthropic = {"model": "m", "system": [{"type": "text", "text": "s"}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image", "source": {"type": "base64",
                                                                  "media_type": "image/png",
                                                                  "data": "iVBOR"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                           "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                      "content": "42"}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"}, "metadata": {"user_id": "u"},
        "stop_sequences": ["x"], "max_tokens": 9}
    AnthropicMessagesRequest.model_validate(anthropic)
    check_request(Op.CHAT, AnthropicProtocol().canonical(Op.CHAT, anthropic))
    ollama = {"model": "m", "messages": [
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "42", "tool_name": "f"},
        {"role": "user", "content": "see", "images": ["iVBOR"]}],
        "options": {"num_predict": 3, "stop": ["x"]}, "format": "json"}
    OllamaChatRequest.model_validate(ollama)
    check_request(Op.CHAT, OllamaProtocol().canonical(Op.CHAT, ollama))


# -- end to end ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("hostile"), {
        kind: [{"id": f"{kind}-up", "api_host": upstream.url, "api_type": kind}]
        for kind in ("openai", "ollama", "anthropic")})
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="1")
    yield server
    server.stop()


E2E = [
    ("/v1/chat/completions", "anthropic", {"messages": USER, "stop": 5}, "stop"),
    ("/v1/chat/completions", "anthropic", {"messages": USER, "tools": "x"}, "tools"),
    ("/v1/chat/completions", "ollama",
     {"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": "x"}]}]},
     "messages.0.tool_calls.0.function"),
    ("/v1/chat/completions", "anthropic",
     {"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": "x"}]}]},
     "messages.0.tool_calls.0.function"),
    ("/api/chat", "anthropic",
     {"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": "x"}]}]},
     None),
    ("/api/chat", "openai", {"messages": USER, "options": {"temperature": "hot"}}, None),
    ("/v1/messages", "openai",
     {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, None),
    ("/v1/messages", "ollama", {"messages": USER, "metadata": "x"}, None),
]


@pytest.mark.parametrize("route,model,body,param", E2E)
def test_hostile_fields_are_400_in_the_callers_shape(gateway: Gateway, fresh_upstream: StandIn,
                                                     route: str, model: str,
                                                     body: dict[str, Any],
                                                     param: str | None) -> None:
    reply = requests.post(gateway.url + route, json={"model": model, "max_tokens": 5, **body},
                          timeout=10)
    assert reply.status_code == 400, reply.text
    error = reply.json()
    if route.startswith("/api/"):
        assert isinstance(error["error"], str)
    elif route == "/v1/messages":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    else:
        assert error["error"]["param"] == param
    assert fresh_upstream.count == 0  # refused before any model call
