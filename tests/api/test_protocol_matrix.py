"""Every caller protocol × every provider type, end to end.

One real gateway process (prefix ``/llm``, so the Ollama routes must still answer at ``/api``),
one stand-in upstream playing all four provider types, and the official ``openai``, ``ollama``
and ``anthropic`` clients in front. Each caller has a small driver with the same four moves:
plain text, a tool call, sampling fields, and a conversation that carries a tool result back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import ollama
import openai
import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, write_config

PROVIDERS = ("openai", "vllm", "ollama", "anthropic")
CALLERS = ("openai", "ollama", "anthropic")
TOKEN = "sk-matrix-provider-token"
TEXT = "tok0 tok1 tok2 tok3 tok4 "
ARGS = {"location": "Paris"}
USER = [{"role": "user", "content": "what is the weather"}]
SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}}}
OPENAI_TOOL = {"type": "function", "function": {"name": "get_weather",
                                                "description": "weather", "parameters": SCHEMA}}
ANTHROPIC_TOOL = {"name": "get_weather", "description": "weather", "input_schema": SCHEMA}
PROVIDER_OPTIONS = {"ollama": {"num_ctx": 2048, "temperature": 0.9},
                    "anthropic": {"max_tokens": 77}}


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    providers = {f"m-{kind}": [{"id": f"p-{kind}", "api_host": upstream.url, "api_type": kind,
                                "api_token": TOKEN, "model_path": f"up-{kind}",
                                "options": PROVIDER_OPTIONS.get(kind, {}),
                                **({"keep_alive": "5m"} if kind == "ollama" else {})}]
                 for kind in PROVIDERS}
    config = write_config(tmp_path_factory.mktemp("matrix"), providers)
    server = Gateway(config, prefix="/llm", LLM_ROUTER_EXTERNAL_TIMEOUT="2",
                     LLM_ROUTER_COOLDOWN="0")
    yield server
    server.stop()
    assert TOKEN not in server.output()


# -- drivers: one per caller protocol ---------------------------------------------------------
class OpenAIDriver:
    def __init__(self, url: str) -> None:
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)

    def text(self, model: str, stream: bool) -> str:
        if not stream:
            reply = self.client.chat.completions.create(model=model, messages=USER)
            assert reply.usage is not None and reply.usage.completion_tokens == 5
            return reply.choices[0].message.content or ""
        chunks = list(self.client.chat.completions.create(
            model=model, messages=USER, stream=True,
            stream_options={"include_usage": True}))
        assert len({c.id for c in chunks}) == 1
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    def tool(self, model: str, stream: bool) -> tuple[str, Any]:
        if not stream:
            reply = self.client.chat.completions.create(model=model, messages=USER,
                                                        tools=[OPENAI_TOOL])
            assert reply.choices[0].finish_reason == "tool_calls"
            call = reply.choices[0].message.tool_calls[0]
            return call.function.name, json.loads(call.function.arguments)
        name, arguments = "", ""
        for chunk in self.client.chat.completions.create(
                model=model, messages=USER, tools=[OPENAI_TOOL], stream=True):
            for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                name += delta.function.name or "" if delta.function else ""
                arguments += delta.function.arguments or "" if delta.function else ""
        return name, json.loads(arguments)

    def sampling(self, model: str) -> None:
        self.client.chat.completions.create(model=model, messages=USER, temperature=0.3,
                                            top_p=0.9, max_tokens=50, stop=["END"], seed=7,
                                            extra_body={"top_k": 7})

    def tool_history(self, model: str) -> str:
        messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
        reply = self.client.chat.completions.create(model=model, messages=messages,
                                                    tools=[OPENAI_TOOL])
        return reply.choices[0].message.content or ""


class OllamaDriver:
    def __init__(self, url: str) -> None:
        self.client = ollama.Client(host=url)

    def text(self, model: str, stream: bool) -> str:
        if not stream:
            reply = self.client.chat(model=model, messages=USER, stream=False)
            assert reply.done and reply.done_reason == "stop" and reply.eval_count == 5
            return reply.message.content or ""
        parts = list(self.client.chat(model=model, messages=USER, stream=True))
        assert [p.done for p in parts].count(True) == 1 and parts[-1].done
        assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 5
        return "".join(p.message.content or "" for p in parts)

    def tool(self, model: str, stream: bool) -> tuple[str, Any]:
        parts = ([self.client.chat(model=model, messages=USER, tools=[OPENAI_TOOL])]
                 if not stream else
                 list(self.client.chat(model=model, messages=USER, tools=[OPENAI_TOOL],
                                       stream=True)))
        calls = [c for p in parts for c in p.message.tool_calls or []]
        assert len(calls) == 1
        return calls[0].function.name, dict(calls[0].function.arguments)

    def sampling(self, model: str) -> None:
        self.client.chat(model=model, messages=USER, stream=False, options={
            "temperature": 0.3, "top_p": 0.9, "top_k": 7, "num_predict": 50, "stop": ["END"],
            "seed": 7})

    def tool_history(self, model: str) -> str:
        messages = [*USER, {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": ARGS}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
        reply = self.client.chat(model=model, messages=messages, tools=[OPENAI_TOOL],
                                 stream=False)
        return reply.message.content or ""


class AnthropicDriver:
    def __init__(self, url: str) -> None:
        self.client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)

    def text(self, model: str, stream: bool) -> str:
        if not stream:
            reply = self.client.messages.create(model=model, max_tokens=100, messages=USER)
            assert reply.stop_reason == "end_turn" and reply.usage.output_tokens == 5
            return "".join(b.text for b in reply.content if b.type == "text")
        events = list(self.client.messages.create(model=model, max_tokens=100,
                                                  messages=USER, stream=True))
        kinds = [e.type for e in events]
        assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
        assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1
        return "".join(e.delta.text for e in events
                       if e.type == "content_block_delta" and e.delta.type == "text_delta")

    def tool(self, model: str, stream: bool) -> tuple[str, Any]:
        args: dict[str, Any] = {"model": model, "max_tokens": 100, "messages": USER,
                                "tools": [ANTHROPIC_TOOL]}
        if stream:
            with self.client.messages.stream(**args) as events:
                reply = events.get_final_message()
        else:
            reply = self.client.messages.create(**args)
        assert reply.stop_reason == "tool_use"
        blocks = [b for b in reply.content if b.type == "tool_use"]
        assert len(blocks) == 1
        return blocks[0].name, blocks[0].input

    def sampling(self, model: str) -> None:
        # This SDK no longer names the sampling fields; the Messages API still takes them.
        self.client.messages.create(model=model, messages=USER, max_tokens=50,
                                    stop_sequences=["END"],
                                    extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 7})

    def tool_history(self, model: str) -> str:
        messages = [*USER, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": ARGS}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]
        reply = self.client.messages.create(model=model, max_tokens=100, messages=messages,
                                            tools=[ANTHROPIC_TOOL])
        return "".join(b.text for b in reply.content if b.type == "text")


DRIVERS = {"openai": OpenAIDriver, "ollama": OllamaDriver, "anthropic": AnthropicDriver}
Driver = OpenAIDriver | OllamaDriver | AnthropicDriver


@pytest.fixture(params=CALLERS)
def caller(request: pytest.FixtureRequest, gateway: Gateway, fresh_upstream: StandIn) -> Driver:
    return DRIVERS[request.param](gateway.url)


# -- the matrix -------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_text(caller: Driver, provider: str, stream: bool, upstream: StandIn) -> None:
    assert caller.text(f"m-{provider}", stream) == TEXT
    sent = upstream.requests[-1]
    assert sent["json"]["model"] == f"up-{provider}"
    assert sent["json"].get("stream", provider == "ollama") is stream or provider == "ollama"
    if provider == "anthropic":
        assert sent["headers"]["x-api-key"] == TOKEN
        assert sent["headers"]["anthropic-version"] == "2023-06-01"
        assert "authorization" not in sent["headers"]
    else:
        assert sent["headers"]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_call_reaches_the_caller(caller: Driver, provider: str, stream: bool,
                                      upstream: StandIn) -> None:
    assert caller.tool(f"m-{provider}", stream) == ("get_weather", ARGS)
    tools = upstream.requests[-1]["json"]["tools"]
    if provider == "anthropic":
        assert tools == [ANTHROPIC_TOOL]
    else:
        assert tools == [OPENAI_TOOL]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_result_reaches_the_provider(caller: Driver, provider: str,
                                          upstream: StandIn) -> None:
    assert caller.tool_history(f"m-{provider}") == TEXT
    messages = upstream.requests[-1]["json"]["messages"]
    if provider == "anthropic":
        use = messages[1]["content"][0]
        assert messages[1]["role"] == "assistant" and use["type"] == "tool_use"
        assert use["name"] == "get_weather" and use["input"] == ARGS
        result = messages[2]["content"][0]
        assert messages[2]["role"] == "user" and result["type"] == "tool_result"
        assert result["tool_use_id"] == use["id"] and "sunny" in json.dumps(result["content"])
    elif provider == "ollama":
        call = messages[1]["tool_calls"][0]["function"]
        assert call == {"name": "get_weather", "arguments": ARGS}
        assert messages[2]["role"] == "tool" and messages[2]["content"] == "sunny"
        assert messages[2]["tool_name"] == "get_weather"
    else:
        call = messages[1]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == ARGS
        assert messages[2] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sampling_fields_arrive_under_the_providers_names(caller: Driver, provider: str,
                                                          upstream: StandIn) -> None:
    caller.sampling(f"m-{provider}")
    body = upstream.requests[-1]["json"]
    has_seed = not isinstance(caller, AnthropicDriver)  # Anthropic callers cannot send one
    if provider == "ollama":
        expected = {"temperature": 0.3, "top_p": 0.9, "top_k": 7, "num_predict": 50,
                    "stop": ["END"], "num_ctx": 2048, **({"seed": 7} if has_seed else {})}
        assert body["options"] == expected  # caller wins over provider options
        assert body["keep_alive"] == "5m"
        return
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.9, 50)
    if provider == "anthropic":
        assert body["stop_sequences"] == ["END"] and body["top_k"] == 7
        assert "seed" not in body and "stop" not in body
        return
    assert body["stop"] == ["END"]
    assert body.get("seed") == (7 if has_seed else None)
    assert body.get("top_k") == (7 if provider == "vllm" else None)


# -- a stream that dies halfway ---------------------------------------------------------------
def openai_frames(text: str) -> list[str]:
    frames = [f for f in text.split("\n\n") if f.strip()]
    assert frames[-1] == "data: [DONE]"
    assert frames[-2].startswith('data: {"error"') and "upstream_error" in frames[-2]
    return frames[:-1]


def ollama_frames(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    last = json.loads(lines[-1])
    assert set(last) == {"error"} and isinstance(last["error"], str)
    assert not any(json.loads(line).get("done") for line in lines)
    return lines


def anthropic_frames(text: str) -> list[str]:
    frames = [f for f in text.split("\n\n") if f.strip()]
    name, data = frames[-1].split("\n")
    assert name == "event: error"
    error = json.loads(data.removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert frames[0].startswith("event: message_start")
    assert not any("message_stop" in f for f in frames)
    return frames


BROKEN = {
    "openai": ("/v1/chat/completions", {"messages": USER}, openai_frames),
    "ollama": ("/api/chat", {"messages": USER}, ollama_frames),
    "anthropic": ("/v1/messages", {"messages": USER, "max_tokens": 50}, anthropic_frames),
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("protocol", CALLERS)
def test_stream_dying_halfway_ends_with_one_error_event(protocol: str, provider: str,
                                                        gateway: Gateway,
                                                        fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="die_mid_stream", die_after=4)
    path, body, check = BROKEN[protocol]
    response = requests.post(gateway.url + path, json={**body, "model": f"m-{provider}",
                                                       "stream": True}, timeout=10)
    assert response.status_code == 200
    frames = check(response.text)
    assert sum('"error"' in f for f in frames) == 1
    assert "tok0" in response.text  # it really died after the stream began


def test_each_client_raises_on_a_dying_stream(gateway: Gateway, fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="die_mid_stream", die_after=4)
    with pytest.raises(openai.APIError):
        list(OpenAIDriver(gateway.url).client.chat.completions.create(
            model="m-ollama", messages=USER, stream=True))
    with pytest.raises(ollama.ResponseError):
        list(OllamaDriver(gateway.url).client.chat(model="m-anthropic", messages=USER,
                                                   stream=True))
    with pytest.raises(anthropic.APIStatusError):
        list(AnthropicDriver(gateway.url).client.messages.create(
            model="m-openai", max_tokens=10, messages=USER, stream=True))


# -- the other operations ---------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["openai", "vllm", "ollama"])
def test_embeddings_both_ways(provider: str, gateway: Gateway, fresh_upstream: StandIn) -> None:
    openai_client = OpenAIDriver(gateway.url).client
    via_openai = openai_client.embeddings.create(model=f"m-{provider}", input=["a b", "c"])
    via_ollama = OllamaDriver(gateway.url).client.embed(model=f"m-{provider}", input=["a b", "c"])
    vectors = [d.embedding for d in via_openai.data]
    assert len(vectors) == 2 and len(vectors[0]) == 4
    flat = [x for v in via_ollama.embeddings for x in v]
    assert flat == pytest.approx([x for v in vectors for x in v], abs=1e-6)
    if provider != "ollama":  # translated answers name the public model; forwarded ones as sent
        assert via_ollama.model == f"m-{provider}"


def test_embeddings_on_anthropic_are_a_clear_400(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        OpenAIDriver(gateway.url).client.embeddings.create(model="m-anthropic", input="x")
    assert "cannot create embeddings" in caught.value.message
    with pytest.raises(ollama.ResponseError) as refused:
        OllamaDriver(gateway.url).client.embed(model="m-anthropic", input="x")
    assert refused.value.status_code == 400 and "embeddings" in refused.value.error


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_generate_and_completions(provider: str, stream: bool, gateway: Gateway,
                                  fresh_upstream: StandIn) -> None:
    client = OllamaDriver(gateway.url).client
    if stream:
        parts = list(client.generate(model=f"m-{provider}", prompt="hi there", stream=True))
        assert parts[-1].done and parts[-1].eval_count == 5
        assert "".join(p.response for p in parts) == TEXT
    else:
        reply = client.generate(model=f"m-{provider}", prompt="hi there", system="be brief")
        assert reply.response == TEXT and reply.done_reason == "stop"
    completion = OpenAIDriver(gateway.url).client.completions.create(
        model=f"m-{provider}", prompt="hi there", max_tokens=30)
    assert completion.choices[0].text == TEXT
    if provider == "ollama":
        assert fresh_upstream.requests[-1]["path"] == "/api/generate"
        assert fresh_upstream.requests[-1]["json"]["options"]["num_predict"] == 30


def test_stream_ids_differ_between_responses_and_usage_is_optional(
        gateway: Gateway, fresh_upstream: StandIn) -> None:
    client = OpenAIDriver(gateway.url).client
    ids = set()
    for _ in range(2):
        chunks = list(client.chat.completions.create(model="m-ollama", messages=USER,
                                                     stream=True))
        assert all(c.choices for c in chunks)  # no usage chunk unless asked for
        ids |= {c.id for c in chunks}
    assert len(ids) == 2


def test_ollama_json_format_images_and_anthropic_default_max_tokens(
        gateway: Gateway, fresh_upstream: StandIn) -> None:
    image = "iVBORw0KGgoAAAANSUhEUg=="
    OllamaDriver(gateway.url).client.chat(
        model="m-anthropic", format="json", stream=False,
        messages=[{"role": "system", "content": "be terse"},
                  {"role": "user", "content": "look", "images": [image]}])
    body = fresh_upstream.requests[-1]["json"]
    assert body["system"] == "be terse" and body["max_tokens"] == 77
    assert body["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}}
    OpenAIDriver(gateway.url).client.chat.completions.create(
        model="m-ollama", response_format={"type": "json_object"},
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}])
    body = fresh_upstream.requests[-1]["json"]
    assert body["format"] == "json" and body["messages"][0]["images"] == [image]


def test_generate_with_images(gateway: Gateway, fresh_upstream: StandIn) -> None:
    client = OllamaDriver(gateway.url).client
    image = "/9j/4AAQSkZJRg=="
    client.generate(model="m-anthropic", prompt="describe", images=[image], stream=False)
    block = fresh_upstream.requests[-1]["json"]["messages"][0]["content"][1]
    assert block["source"] == {"type": "base64", "media_type": "image/jpeg", "data": image}
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model="m-vllm", prompt="describe", images=[image], stream=False)
    assert refused.value.status_code == 400 and "images" in refused.value.error


def test_ollama_info_routes_stay_at_api(gateway: Gateway) -> None:
    client = OllamaDriver(gateway.url).client
    shown = client.show("m-ollama:latest")
    assert shown.details is not None and shown.details.family == "ollama"
    assert {m.model for m in client.ps().models} == {f"m-{p}" for p in PROVIDERS}
    assert requests.post(gateway.url + "/llm/chat", json={"model": "m-openai", "messages": USER,
                                                          "stream": False},
                         timeout=5).json()["message"]["content"] == TEXT
    loaded = client.chat(model="m-openai", messages=[], stream=False)
    assert loaded.done_reason == "load"


# -- bad input, in each caller's own shape ----------------------------------------------------
BAD = [
    ("/api/chat", {"messages": USER}, "model"),
    ("/api/chat", {"model": "m-openai", "messages": [{"content": "x"}]}, "messages.0.role"),
    ("/api/chat", {"model": "m-openai", "messages": USER, "stream": "yes"}, "stream"),
    ("/api/embed", {"model": "m-openai"}, "input"),
    ("/v1/messages", {"model": "m-openai"}, "messages"),
    ("/v1/messages", {"model": "m-openai", "messages": [{"role": "tool", "content": "x"}]},
     "messages.0.role"),
    ("/v1/messages", {"model": "m-openai", "messages": USER, "max_tokens": 0}, "max_tokens"),
]


def error_message(path: str, response: requests.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if path.startswith("/api/"):
        assert set(body) == {"error"}
        return str(body["error"])
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}
    return str(body["error"]["message"])


@pytest.mark.parametrize("path,body,field", BAD)
def test_bad_input_is_400_naming_the_field(gateway: Gateway, path: str, body: dict[str, Any],
                                           field: str) -> None:
    response = requests.post(gateway.url + path, json=body, timeout=5)
    assert response.status_code == 400
    assert error_message(path, response).startswith(field)


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/v1/messages"])
def test_unknown_model_and_bad_json_in_the_callers_shape(gateway: Gateway, path: str) -> None:
    body = {"model": "nope", "messages": USER, "prompt": "x", "max_tokens": 5}
    missing = requests.post(gateway.url + path, json=body, timeout=5)
    assert missing.status_code == 404 and "nope" in error_message(path, missing)
    broken = requests.post(gateway.url + path, data=b"{nope",
                           headers={"Content-Type": "application/json"}, timeout=5)
    assert broken.status_code == 400 and "JSON" in error_message(path, broken)


def test_clients_raise_status_errors(gateway: Gateway) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        OllamaDriver(gateway.url).client.chat(model="nope", messages=USER)
    assert refused.value.status_code == 404
    with pytest.raises(anthropic.NotFoundError):
        AnthropicDriver(gateway.url).client.messages.create(
            model="nope", max_tokens=5, messages=USER)
    with pytest.raises(anthropic.BadRequestError):
        AnthropicDriver(gateway.url).client.messages.create(
            model="m-openai", max_tokens=5, messages=[])


@pytest.mark.parametrize("path", ["/llm/chat", "/api/chat", "/llm/generate"])
def test_wrong_method_on_ollama_routes_answers_in_ollama_shape(gateway: Gateway,
                                                                path: str) -> None:
    response = requests.get(gateway.url + path, timeout=5)
    assert response.status_code == 405
    assert set(response.json()) == {"error"} and isinstance(response.json()["error"], str)


@pytest.mark.parametrize("model", ["m-openai", "m-ollama"])
def test_ollama_legacy_embeddings(gateway: Gateway, fresh_upstream: StandIn, model: str) -> None:
    client = ollama.Client(host=gateway.url)
    vector = client.embeddings(model=model, prompt="embed me").embedding
    assert len(vector) == 4 and all(isinstance(x, float) for x in vector)
    sent = fresh_upstream.requests[-1]
    assert sent["path"] in ("/v1/embeddings", "/api/embed")
    assert sent["json"]["input"] in ("embed me", ["embed me"])
    bad = requests.post(gateway.url + "/api/embeddings", json={"model": model}, timeout=5)
    assert bad.status_code == 400 and bad.json() == {"error": "prompt: Field required"}
