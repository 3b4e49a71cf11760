"""The Responses API end to end, in production mode (gunicorn + gevent, 2 workers, Redis,
API keys): the official ``openai`` client (``responses.create`` / ``.stream`` / ``.parse``)
and the OpenAI Agents SDK against every provider type, raw SSE checks of the event contract,
a provider dying mid-stream, stored responses (``previous_response_id``, GET, DELETE, key
scope) and native pass-through with follow-ups pinned to the provider that holds the state.
Replies are validated against the ``openai`` SDK's typed models (OpenAI's published schema).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
from pydantic import BaseModel

from standin import StandIn
from tests.formats.test_responses import check_contract, parse_sse, strict_response
from tests.support.procs import Gateway, RedisServer, running_standins, write_config

KINDS = ("openai", "vllm", "ollama", "anthropic")
MODELS = (*(f"m-{k}" for k in KINDS), "m-native")
KEY_A, KEY_B = "responses-key-aaaaaaaa", "responses-key-bbbbbbbb"
TOOL = {"type": "function", "name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "required": ["location"], "additionalProperties": False},
        "strict": True}


@pytest.fixture(scope="module")
def pair() -> Iterator[list[StandIn]]:
    with running_standins(2, "resp-pin") as servers:
        yield servers


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, pair: list[StandIn], redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models: dict[str, list[dict[str, Any]]] = {
        f"m-{k}": [{"id": f"p-{k}", "api_host": upstream.url, "api_type": k,
                    "model_path": f"up-{k}"}] for k in KINDS}
    models["m-native"] = [{"id": "p-native", "api_host": upstream.url, "api_type": "vllm",
                           "model_path": "up-native", "responses": "native"}]
    models["m-pinned"] = [{"id": f"p-pin{i}", "api_host": s.url, "api_type": "ollama",
                           "model_path": "up-pinned", "responses": "native"}
                          for i, s in enumerate(pair)]
    config = write_config(tmp_path_factory.mktemp("responses"), models)
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                     LLM_ROUTER_API_KEYS=f"{KEY_A},{KEY_B}", LLM_ROUTER_COOLDOWN="0",
                     LLM_ROUTER_USE_PROMETHEUS="1", LLM_ROUTER_EXTERNAL_TIMEOUT="5")
    yield server
    server.stop()
    assert "Traceback" not in server.output()


@pytest.fixture
def client(gateway: Gateway, upstream: StandIn) -> openai.OpenAI:
    upstream.reset()
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY_A, max_retries=0)


def post(gateway: Gateway, body: dict[str, Any], key: str = KEY_A,
         path: str = "/v1/responses") -> requests.Response:
    return requests.post(gateway.url + path, json=body, timeout=30,
                         headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("model", MODELS)
def test_create_and_stream_on_every_provider_type(client: openai.OpenAI, model: str) -> None:
    reply = client.responses.create(model=model, input="hello", instructions="be brief",
                                    max_output_tokens=64, temperature=0.5)
    strict_response(reply.model_dump(mode="json", exclude_unset=True))
    assert reply.status == "completed" and reply.model == model
    assert reply.output_text == "tok0 tok1 tok2 tok3 tok4 "
    assert reply.usage is not None and reply.usage.output_tokens == 5
    assert reply.usage.total_tokens == reply.usage.input_tokens + 5
    with client.responses.stream(model=model, input="hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "tok0 tok1 tok2 tok3 tok4 "
    assert final.model == model and final.status == "completed"


@pytest.mark.parametrize("model", MODELS)
def test_tool_round_trip(client: openai.OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="weather in Paris?", tools=[TOOL],
                                    store=False)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"location": "Paris"}
    assert calls[0].id and calls[0].id.startswith("fc") and calls[0].call_id
    # the whole transcript back, as agents send it: earlier items with their ids and status
    transcript = [{"role": "user", "content": "weather in Paris?"},
                  *[o.model_dump(exclude_none=True) for o in first.output],
                  {"type": "function_call_output", "call_id": calls[0].call_id,
                   "output": "sunny"}]
    second = client.responses.create(model=model, input=transcript, tools=[TOOL], store=False)
    assert second.output_text == "tok0 tok1 tok2 tok3 tok4 "


@pytest.mark.parametrize("model", ("m-openai", "m-anthropic"))
def test_tool_turn_reaches_the_provider_in_its_own_format(
        client: openai.OpenAI, upstream: StandIn, model: str) -> None:
    transcript = [
        {"type": "message", "role": "developer", "content": "rule one"},
        {"type": "message", "role": "developer", "content": "rule two"},
        {"role": "user", "content": "weather?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": "{\"location\":\"Paris\"}", "status": "completed"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]
    client.responses.create(model=model, input=transcript, instructions="be brief",
                            tools=[TOOL, {"type": "web_search"}], store=False)
    sent = upstream.requests[-1]["json"]
    if model == "m-openai":
        assert sent["messages"][0] == {"role": "system",
                                       "content": "be brief\n\nrule one\n\nrule two"}
        assert sent["messages"][2]["tool_calls"][0]["id"] == "call_1"
        assert sent["messages"][3] == {"role": "tool", "tool_call_id": "call_1",
                                       "content": "sunny"}
        assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    else:
        assert sent["system"] == "be brief\n\nrule one\n\nrule two"
        assert sent["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0]["type"] == "tool_result"
        assert [t["name"] for t in sent["tools"]] == ["get_weather"]


def test_dropped_builtin_tools_are_counted(gateway: Gateway) -> None:
    reply = post(gateway, {"model": "m-openai", "input": "hi",
                           "tools": [{"type": "web_search"}, {"type": "file_search"}]})
    assert reply.status_code == 200
    metrics = requests.get(gateway.url + "/metrics", timeout=10).text
    assert 'llm_router_responses_tools_dropped_total{type="web_search"}' in metrics


class Weather(BaseModel):
    location: str
    degrees: int


@pytest.mark.parametrize("model", ("m-openai", "m-vllm", "m-ollama", "m-anthropic", "m-native"))
def test_parse_structured_output(client: openai.OpenAI, upstream: StandIn, model: str) -> None:
    parsed = client.responses.parse(model=model, input="weather?", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)
    sent = upstream.requests[-1]["json"]
    if model == "m-ollama":
        assert "format" in sent
    elif model == "m-anthropic":  # one forced tool carries the schema; the caller sees JSON
        assert sent["tool_choice"]["type"] == "tool"
        assert [t["name"] for t in sent["tools"]] == [sent["tool_choice"]["name"]]
    elif model != "m-native":
        assert sent["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("model", MODELS)
def test_raw_stream_contract(gateway: Gateway, upstream: StandIn, model: str) -> None:
    upstream.reset()
    reply = post(gateway, {"model": model, "input": "hello", "stream": True, "tools": [TOOL],
                           "max_output_tokens": 100})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(reply.content)
    check_contract(events)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["model"] == model


@pytest.mark.parametrize("model", ("m-openai", "m-anthropic"))
def test_truncation_is_incomplete(gateway: Gateway, upstream: StandIn, model: str) -> None:
    upstream.reset()
    body = {"model": model, "input": "hello", "max_output_tokens": 2}
    whole = post(gateway, body).json()
    strict_response(whole)
    assert whole["status"] == "incomplete"
    assert whole["incomplete_details"] == {"reason": "max_output_tokens"}
    events = parse_sse(post(gateway, {**body, "stream": True}).content)
    check_contract(events)
    assert events[-1]["type"] == "response.incomplete"


@pytest.mark.parametrize("model", MODELS)
def test_death_mid_stream_is_one_failed_event(gateway: Gateway, upstream: StandIn,
                                              model: str) -> None:
    upstream.reset()
    upstream.set_behaviour(mode="die_mid_stream", die_after=8, tokens=30)
    try:
        reply = post(gateway, {"model": model, "input": "hello", "stream": True})
        events = parse_sse(reply.content)
    finally:
        upstream.reset()
    check_contract(events)
    types = [e["type"] for e in events]
    assert types.count("response.failed") == 1 and types[-1] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    assert events[-1]["response"]["status"] == "failed"


def test_bad_requests_are_openai_shaped_400s(gateway: Gateway) -> None:
    for body in ({"input": "x"}, {"model": "m-openai", "input": 5},
                 {"model": "m-openai", "input": "x", "max_output_tokens": "many"},
                 {"model": "m-openai", "input": "x", "stream": "yes"}):
        reply = post(gateway, body)
        assert reply.status_code == 400, body
        assert reply.json()["error"]["type"] == "invalid_request_error"
    unknown = post(gateway, {"model": "nope", "input": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("model", ("m-openai", "m-anthropic", "m-native"))
def test_store_continue_get_delete_and_key_scope(gateway: Gateway, upstream: StandIn,
                                                 model: str) -> None:
    upstream.reset()
    first = post(gateway, {"model": model, "input": "my name is Ada",
                           "instructions": "be brief"}).json()
    strict_response(first)
    rid = first["id"]
    # GET (any worker: the store is Redis) returns the same response; another key sees none
    got = requests.get(f"{gateway.url}/v1/responses/{rid}", timeout=10,
                       headers={"Authorization": f"Bearer {KEY_A}"})
    assert got.status_code == 200 and got.json() == first
    for method in ("get", "delete"):
        foreign = requests.request(method, f"{gateway.url}/v1/responses/{rid}", timeout=10,
                                   headers={"Authorization": f"Bearer {KEY_B}"})
        assert foreign.status_code == 404
        assert foreign.json()["error"]["type"] == "not_found_error"
    stolen = post(gateway, {"model": model, "input": "and?", "previous_response_id": rid},
                  key=KEY_B)
    assert stolen.status_code == 400
    assert stolen.json()["error"]["param"] == "previous_response_id"
    assert stolen.json()["error"]["code"] == "previous_response_not_found"
    # the follow-up carries the stored transcript before the new input
    follow = post(gateway, {"model": model, "input": "what is my name?",
                            "previous_response_id": rid, "stream": True})
    events = parse_sse(follow.content)
    check_contract(events)
    assert events[-1]["response"]["previous_response_id"] == rid
    sent = upstream.requests[-1]["json"]
    if model == "m-native":  # the provider holds the state: the id goes as sent
        assert sent["previous_response_id"] == rid and sent["input"] == "what is my name?"
    else:
        text = json.dumps(sent)
        assert "my name is Ada" in text and "what is my name?" in text
    second = events[-1]["response"]["id"]
    third = post(gateway, {"model": model, "input": "bye", "previous_response_id": second})
    assert third.status_code == 200
    if model != "m-native":
        assert json.dumps(upstream.requests[-1]["json"]).count("my name is Ada") == 1
    # DELETE, then the id is gone everywhere
    deleted = requests.delete(f"{gateway.url}/v1/responses/{rid}", timeout=10,
                              headers={"Authorization": f"Bearer {KEY_A}"})
    assert deleted.json() == {"id": rid, "object": "response", "deleted": True}
    assert requests.get(f"{gateway.url}/v1/responses/{rid}", timeout=10,
                        headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 404
    gone = post(gateway, {"model": model, "input": "x", "previous_response_id": rid})
    assert gone.json()["error"]["code"] == "previous_response_not_found"


def test_store_false_is_not_kept(gateway: Gateway) -> None:
    rid = post(gateway, {"model": "m-openai", "input": "x", "store": False}).json()["id"]
    assert requests.get(f"{gateway.url}/v1/responses/{rid}", timeout=10,
                        headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 404


def test_native_follow_up_goes_to_the_holder_while_healthy(gateway: Gateway,
                                                           pair: list[StandIn]) -> None:
    for server in pair:
        server.reset()
    first = post(gateway, {"model": "m-pinned", "input": "remember 42"}).json()
    holder = next(s for s in pair if s.requests)
    other = next(s for s in pair if s is not holder)
    assert first["id"].startswith("resp_") and first["model"] == "m-pinned"
    assert holder.requests[-1]["json"]["model"] == "up-pinned"
    previous = first["id"]
    for _ in range(4):  # the strategy alone would spread these over both providers
        reply = post(gateway, {"model": "m-pinned", "input": "again",
                               "previous_response_id": previous})
        assert reply.status_code == 200, reply.text
        assert holder.requests[-1]["json"]["previous_response_id"] == previous
        previous = reply.json()["id"]
    assert not other.requests
    # the holder fails: the follow-up is sent translated... here to the other native provider,
    # which does not know the id, so it gets the whole transcript instead
    holder.set_behaviour(mode="status", status_code=500)
    reply = post(gateway, {"model": "m-pinned", "input": "still there?",
                           "previous_response_id": previous})
    assert reply.status_code == 200, reply.text
    sent = other.requests[-1]["json"]
    assert "previous_response_id" not in sent
    assert "remember 42" in json.dumps(sent["input"]) and sent["input"][-1]["content"] == (
        "still there?")


def test_agents_sdk_function_tool(gateway: Gateway, upstream: StandIn) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    upstream.reset()
    set_tracing_disabled(True)
    asked: list[str] = []

    @function_tool
    def get_weather(location: str) -> str:
        """The weather in a city."""
        asked.append(location)
        return "sunny"

    def agent(model: str) -> Agent[Any]:  # a client per event loop (run_sync has its own)
        return Agent(name="helper", instructions="Answer briefly.", tools=[get_weather],
                     model=OpenAIResponsesModel(model=model, openai_client=openai.AsyncOpenAI(
                         base_url=gateway.url + "/v1", api_key=KEY_A, max_retries=0)))

    async def streamed(model: str) -> str:
        run = Runner.run_streamed(agent(model), "And in Paris tomorrow?")
        async for _ in run.stream_events():
            pass
        return str(run.final_output)

    for model in MODELS:
        result = Runner.run_sync(agent(model), "What is the weather in Paris?")
        assert result.final_output == "tok0 tok1 tok2 tok3 tok4 ", model
        assert asyncio.run(streamed(model)) == "tok0 tok1 tok2 tok3 tok4 ", model
    assert asked == ["Paris"] * 2 * len(MODELS)




ODD_BODIES = (
    {"input": [{"type": "message", "role": "user", "content": 5}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}},
               {"type": "function_call_output", "call_id": "c",
                "output": [{"type": "input_image", "image_url": "x"}]},
               {"role": "user", "content": "go"}]},
    {"input": [{"type": "item_reference", "id": "msg_1"}, {"type": "unknown_item"},
               {"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
    {"input": "x", "tools": [{"type": "function"}, {"type": "namespace", "name": "n"},
                             {"type": "namespace", "name": "n", "tools": "bad"}, "junk"]},
    {"input": "x", "tool_choice": {"type": "web_search"}, "tools": [{"type": "web_search"}]},
    {"input": "x", "text": {"format": {"type": "json_schema", "schema": "not-an-object"}}},
    {"input": "x", "reasoning": {"effort": 5}, "include": "junk", "client_metadata": [1]},
    {"input": "x", "previous_response_id": "resp_" + "9" * 5000},
)


@pytest.mark.parametrize("extra", ODD_BODIES)
@pytest.mark.parametrize("model", ("m-openai", "m-ollama", "m-anthropic"))
def test_odd_requests_never_break_the_gateway(gateway: Gateway, upstream: StandIn,
                                              model: str, extra: dict[str, Any]) -> None:
    upstream.reset()
    reply = post(gateway, {"model": model, **extra})
    assert reply.status_code in (200, 400), reply.text
    if reply.status_code == 400:
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
        assert len(error["message"]) < 400
    else:
        strict_response(reply.json())


def test_memory_store_without_redis_or_auth(upstream: StandIn,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    config = write_config(tmp_path_factory.mktemp("responses-memory"), {
        "m": [{"id": "p", "api_host": upstream.url, "api_type": "ollama"}]})
    server = Gateway(config, LLM_ROUTER_RESPONSES_TTL="3600")
    try:
        upstream.reset()
        first = requests.post(server.url + "/api/responses", timeout=30,
                              json={"model": "m", "input": "my name is Ada"}).json()
        follow = requests.post(server.url + "/responses", timeout=30, json={
            "model": "m", "input": "name?", "previous_response_id": first["id"]})
        assert follow.status_code == 200
        assert "my name is Ada" in json.dumps(upstream.requests[-1]["json"])
        got = requests.get(f"{server.url}/v1/responses/{follow.json()['id']}", timeout=10)
        assert got.json() == follow.json()
    finally:
        server.stop()
    assert "Traceback" not in server.output()
