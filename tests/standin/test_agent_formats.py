"""The stand-in's agent-era wire formats, checked with the official clients: the Responses API
(native, as vLLM / Ollama / OpenAI serve it), Anthropic ``count_tokens``, vLLM ``/tokenize``,
and schema-valid structured output (OpenAI ``response_format``, Ollama ``format``, Anthropic
forced tools)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
import requests
from pydantic import BaseModel

from standin import StandIn
from standin.schema import instance

USER = [{"role": "user", "content": "what is the weather"}]
TOOL = {"type": "function", "name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}


class City(BaseModel):
    name: str
    population: int
    tags: list[str]
    capital: bool


@pytest.fixture(scope="module")
def stand() -> Iterator[StandIn]:
    server = StandIn(name="agents")
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def oc(stand: StandIn) -> openai.OpenAI:
    stand.reset()
    return openai.OpenAI(base_url=stand.url + "/v1", api_key="x", max_retries=0)


def test_responses_non_stream_text_and_usage(oc: openai.OpenAI) -> None:
    reply = oc.responses.create(model="m", input="hello there", instructions="be brief")
    assert reply.status == "completed" and reply.id.startswith("resp_")
    assert reply.output_text == "tok0 tok1 tok2 tok3 tok4 "
    assert reply.output[0].type == "message" and reply.output[0].id.startswith("msg_")
    assert reply.usage is not None and reply.usage.input_tokens == 4
    assert reply.usage.output_tokens == 5


def test_responses_stream_event_order_and_sequence(oc: openai.OpenAI) -> None:
    with oc.responses.stream(model="m", input="hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.id == events[0].response.id  # type: ignore[union-attr]
    assert final.output_text == "tok0 tok1 tok2 tok3 tok4 "


def test_responses_function_call_round_trip(oc: openai.OpenAI) -> None:
    first = oc.responses.create(model="m", input="weather?", tools=[TOOL])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"location": "Paris"}
    follow = oc.responses.create(model="m", previous_response_id=first.id, tools=[TOOL],  # type: ignore[list-item]
                                 input=[{"type": "function_call_output",
                                         "call_id": call.call_id, "output": "sunny"}])
    assert follow.output_text  # a tool result is not a user turn: a text answer


def test_responses_truncation_and_unknown_previous_id(oc: openai.OpenAI) -> None:
    cut = oc.responses.create(model="m", input="hi", max_output_tokens=2)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    with pytest.raises(openai.BadRequestError):
        oc.responses.create(model="m", input="hi", previous_response_id="resp_unknown")


def test_responses_structured_output_parses(oc: openai.OpenAI) -> None:
    parsed = oc.responses.parse(model="m", input="a city", text_format=City)
    assert isinstance(parsed.output_parsed, City)


def test_chat_completions_parse_gets_schema_valid_json(oc: openai.OpenAI) -> None:
    parsed = oc.chat.completions.parse(model="m", messages=USER,  # type: ignore[arg-type]
                                       response_format=City)
    assert isinstance(parsed.choices[0].message.parsed, City)
    plain = oc.chat.completions.create(model="m", messages=USER,  # type: ignore[arg-type]
                                       response_format={"type": "json_object"})
    assert json.loads(plain.choices[0].message.content or "") == {}


def test_ollama_format_schema(stand: StandIn) -> None:
    body = {"model": "m", "stream": False, "messages": USER, "format": City.model_json_schema()}
    reply = requests.post(stand.url + "/api/chat", json=body, timeout=5).json()
    City.model_validate_json(reply["message"]["content"])


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_forced_tool_input_follows_the_schema(stand: StandIn, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=stand.url, api_key="x", max_retries=0)
    tool = {"name": "answer", "input_schema": City.model_json_schema()}
    kwargs: dict[str, Any] = {"model": "m", "max_tokens": 100, "messages": USER,
                              "tools": [tool], "tool_choice": {"type": "tool", "name": "answer"}}
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "answer"
    City.model_validate(block.input)


def test_anthropic_count_tokens(stand: StandIn) -> None:
    client = anthropic.Anthropic(base_url=stand.url, api_key="x", max_retries=0)
    counted = client.messages.count_tokens(model="m", system="be brief", messages=USER)  # type: ignore[arg-type]
    assert counted.input_tokens == 2 + 4


def test_vllm_tokenize(stand: StandIn) -> None:
    prompt = requests.post(stand.url + "/tokenize", json={"model": "m", "prompt": "a b c"},
                           timeout=5).json()
    assert prompt["count"] == 3 and len(prompt["tokens"]) == 3 and prompt["max_model_len"] > 0
    chat = requests.post(stand.url + "/tokenize", json={"model": "m", "messages": USER},
                         timeout=5).json()
    assert chat["count"] == 4 + 1
    bad = requests.post(stand.url + "/tokenize", json={"model": "m"}, timeout=5)
    assert bad.status_code == 400 and "error" in bad.json()


def test_schema_instances() -> None:
    schema = {"$defs": {"P": {"type": "object", "properties": {"n": {"type": "integer",
                                                                      "minimum": 3}},
                              "required": ["n"]}},
              "type": "object",
              "properties": {"p": {"$ref": "#/$defs/P"}, "kind": {"enum": ["a", "b"]},
                             "items": {"type": "array", "items": {"type": "string"},
                                       "minItems": 2},
                             "maybe": {"anyOf": [{"type": "null"}, {"type": "number"}]}}}
    assert instance(schema) == {"p": {"n": 4}, "kind": "a", "items": ["x", "x"],
                                "maybe": None}
    assert instance(None) == {} and instance({"type": "object"}) == {}
