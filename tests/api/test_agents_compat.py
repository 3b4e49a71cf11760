"""What coding agents and agent SDKs send (SPEC §10), end to end in production mode: gunicorn
with gevent workers and Redis-shared state, one stand-in playing every provider type.

- Claude Code's ``/v1/messages?beta=true``: ``anthropic-beta`` headers, ``system`` blocks with
  ``cache_control``, ``role: "system"`` turns, ``thinking``, ``context_management``,
  ``output_config``, ``metadata.user_id``, tools with ``defer_loading``, ``max_tokens: 32000``:
  forwarded to Anthropic providers, translated for the others, clamped to
  ``max_output_tokens``;
- ``/v1/messages/count_tokens``: forwarded, vLLM ``/tokenize``, estimated; no slot taken,
  failures never cool a provider down;
- structured output on every provider type (the official clients' own parse helpers);
- OpenAI schema conformance of every OpenAI-shaped reply, and public model names everywhere.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import ollama
import openai
import pytest
import requests
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from standin import StandIn
from standin.sim import ServerSim, SimParams
from tests.support.procs import Gateway, RedisServer, wait_for, write_config

PROVIDERS = ("openai", "vllm", "ollama", "anthropic")
CAP = 1000  # every provider's max_output_tokens
TIMEOUT = 30

# Required fields of OpenAI's published OpenAPI description (components.schemas): read from
# openai/openai-openapi's openapi.yaml, only the lists these tests check.
REQUIRED = {
    "chat.completion": ("choices", "created", "id", "model", "object"),
    "chat.completion.choice": ("finish_reason", "index", "message", "logprobs"),
    "chat.completion.message": ("role", "content", "refusal"),
    "chat.completion.chunk": ("choices", "created", "id", "model", "object"),
    "chat.completion.chunk.choice": ("delta", "finish_reason", "index"),
    "text_completion": ("id", "object", "created", "model", "choices"),
    "text_completion.choice": ("finish_reason", "index", "logprobs", "text"),
    "usage": ("prompt_tokens", "completion_tokens", "total_tokens"),
    "tool_call": ("id", "type", "function"),
}


@pytest.fixture(scope="module")
def slow() -> Iterator[StandIn]:
    """A vLLM stand-in whose streams take seconds: holds the one slot of ``m-busy``."""
    server = StandIn(name="slow")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, slow: StandIn, redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models: dict[str, list[dict[str, Any]]] = {
        f"m-{kind}": [{"id": f"p-{kind}", "api_host": upstream.url, "api_type": kind,
                       "model_path": f"up-{kind}", "max_output_tokens": CAP,
                       "tool_calling": True, "input_size": 8192}]
        for kind in PROVIDERS}
    models["m-busy"] = [{"id": "p-busy", "api_host": slow.url, "api_type": "vllm",
                         "model_path": "up-busy", "max_concurrency": 1}]
    config = write_config(tmp_path_factory.mktemp("agents"), models)
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                     LLM_ROUTER_EXTERNAL_TIMEOUT="10", LLM_ROUTER_COOLDOWN="30",
                     LLM_ROUTER_ACQUIRE_TIMEOUT="20")
    yield server
    server.stop()


def _last(upstream: StandIn, path: str) -> dict[str, Any]:
    calls = [r for r in upstream.requests if r["path"] == path]
    assert calls, f"no call to {path}: {[r['path'] for r in upstream.requests]}"
    return calls[-1]


# -- Claude Code's /v1/messages -----------------------------------------------------------------
CACHE = {"type": "ephemeral"}
TOOL = {"name": "Bash", "description": "run a command", "defer_loading": False,
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                         "required": ["command"]}}


def claude_code_body(stream: bool) -> dict[str, Any]:
    """A request shaped as Claude Code 2.1.x sends it."""
    return {
        "model": "", "max_tokens": 32000, "stream": stream,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": CACHE},
                   {"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello there",
                                          "cache_control": CACHE}]},
            {"role": "system", "content": "The date is today."},
            {"role": "assistant", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "Mode: plan."}]},
            {"role": "user", "content": "list the files"},
        ],
        "tools": [TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc_account_1_session_2"},
        "temperature": 1,
    }


BETA = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"


def _messages(gateway: Gateway, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/messages?beta=true", json=body, timeout=TIMEOUT,
                         headers={"anthropic-beta": BETA, "anthropic-version": "2023-06-01",
                                  "x-api-key": "dummy"})


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
@pytest.mark.parametrize("kind", PROVIDERS)
def test_claude_code_request_is_served_on_every_provider_type(
        gateway: Gateway, fresh_upstream: StandIn, kind: str, stream: bool) -> None:
    fresh_upstream.set_behaviour(tool_call=False)
    body = {**claude_code_body(stream), "model": f"m-{kind}"}
    reply = _messages(gateway, body)
    assert reply.status_code == 200, reply.text
    if stream:
        assert b"event: message_stop" in reply.content
        assert f'"model":"m-{kind}"'.encode() in reply.content.replace(b": ", b":")
    else:
        assert reply.json()["type"] == "message" and reply.json()["model"] == f"m-{kind}"
    system = "You are Claude Code.\nBe brief.\n\nThe date is today.\n\nMode: plan."
    if kind == "anthropic":  # everything forwarded as sent, the beta header too
        sent = _last(fresh_upstream, "/v1/messages")
        assert sent["headers"].get("anthropic-beta") == BETA
        forwarded = sent["json"]
        assert forwarded["messages"] == body["messages"]
        assert forwarded["system"] == body["system"]
        for field in ("context_management", "output_config", "metadata", "tools"):
            assert forwarded[field] == body[field], field
        assert forwarded["max_tokens"] == CAP  # clamped, and the thinking budget below it
        assert forwarded["thinking"]["budget_tokens"] < CAP
        assert forwarded["model"] == "up-anthropic"
        return
    if kind == "ollama":
        sent = _last(fresh_upstream, "/api/chat")["json"]
        assert sent["options"]["num_predict"] == CAP
        messages = sent["messages"]
    else:
        sent = _last(fresh_upstream, "/v1/chat/completions")["json"]
        assert sent["max_tokens"] == CAP
        assert sent["user"] == "user_abc_account_1_session_2"
        for field in ("thinking", "context_management", "output_config", "metadata"):
            assert field not in sent, field
        assert "defer_loading" not in json.dumps(sent["tools"])
        messages = sent["messages"]
    # system blocks and system turns: one system prompt, first, in order
    assert messages[0] == {"role": "system", "content": system}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]


def test_claude_code_through_the_anthropic_client_beta(gateway: Gateway,
                                                       fresh_upstream: StandIn) -> None:
    """The SDK's beta path (``?beta=true``, ``anthropic-beta``) as Claude Code uses it."""
    fresh_upstream.set_behaviour(tool_call=False)
    client = anthropic.Anthropic(base_url=gateway.url, api_key="dummy", max_retries=0)
    body = claude_code_body(False)
    reply = client.beta.messages.create(
        model="m-openai", max_tokens=4096, system=body["system"], messages=body["messages"],
        tools=[TOOL], metadata={"user_id": "u1"}, betas=["interleaved-thinking-2025-05-14"])
    assert reply.model == "m-openai" and reply.content[0].type == "text"
    with client.beta.messages.stream(model="m-anthropic", max_tokens=32000,
                                     messages=body["messages"],
                                     betas=["context-management-2025-06-27"]) as stream:
        final = stream.get_final_message()
    assert final.model == "m-anthropic" and final.stop_reason == "end_turn"
    assert _last(fresh_upstream, "/v1/messages")["headers"]["anthropic-beta"] == \
        "context-management-2025-06-27"


def test_max_output_tokens_clamps_every_protocol(gateway: Gateway,
                                                 fresh_upstream: StandIn) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    client.chat.completions.create(model="m-vllm", max_tokens=CAP * 50,
                                   messages=[{"role": "user", "content": "hi"}])
    assert _last(fresh_upstream, "/v1/chat/completions")["json"]["max_tokens"] == CAP
    client.chat.completions.create(model="m-anthropic", max_completion_tokens=CAP + 1,
                                   messages=[{"role": "user", "content": "hi"}])
    assert _last(fresh_upstream, "/v1/messages")["json"]["max_tokens"] == CAP
    requests.post(f"{gateway.url}/api/generate", timeout=TIMEOUT, json={
        "model": "m-ollama", "prompt": "hi", "stream": False, "options": {"num_predict": -1}})
    assert _last(fresh_upstream, "/api/generate")["json"]["options"]["num_predict"] == CAP
    client.chat.completions.create(model="m-openai", max_tokens=7,
                                   messages=[{"role": "user", "content": "hi"}])
    assert _last(fresh_upstream, "/v1/chat/completions")["json"]["max_tokens"] == 7


# -- count_tokens -------------------------------------------------------------------------------
def _count(gateway: Gateway, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/messages/count_tokens?beta=true", json=body,
                         headers={"anthropic-beta": BETA, "x-api-key": "dummy"},
                         timeout=TIMEOUT)


COUNT_BODY = {"system": "be brief", "messages": [{"role": "user", "content": "one two three"}],
              "tools": [TOOL]}


def test_count_tokens_on_every_provider_type(gateway: Gateway,
                                             fresh_upstream: StandIn) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="dummy", max_retries=0)
    counted = client.messages.count_tokens(model="m-anthropic", **COUNT_BODY)  # type: ignore[arg-type]
    sent = _last(fresh_upstream, "/v1/messages/count_tokens")["json"]
    assert sent["model"] == "up-anthropic" and sent["tools"] == [TOOL]
    assert counted.input_tokens == 8  # the stand-in counts words: system, messages, tools
    counted = client.messages.count_tokens(model="m-vllm", **COUNT_BODY)  # type: ignore[arg-type]
    tokenize = _last(fresh_upstream, "/tokenize")["json"]
    assert tokenize["model"] == "up-vllm"
    assert tokenize["messages"][0] == {"role": "system", "content": "be brief"}
    assert counted.input_tokens == 7  # words + one per message (the stand-in's template)
    before = len(fresh_upstream.requests)
    for kind in ("ollama", "openai"):  # the documented estimate, no upstream call
        reply = _count(gateway, {**COUNT_BODY, "model": f"m-{kind}"})
        assert reply.status_code == 200, reply.text
        chars = len("be brief") + len("one two three") + len(json.dumps(
            {"name": "Bash", "parameters": TOOL["input_schema"], "description": "run a command"}))
        assert abs(reply.json()["input_tokens"] - (-(-chars // 4) + 6)) <= 2
    assert len(fresh_upstream.requests) == before
    # Claude Code's body (system turns, thinking, ...) counts too; bad input is a 400
    assert _count(gateway, {**claude_code_body(False), "model": "m-ollama"}).status_code == 200
    bad = _count(gateway, {"model": "m-ollama", "messages": "x"})
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    assert _count(gateway, {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
                  ).status_code == 404


def test_count_tokens_takes_no_slot_and_never_cools_a_provider(
        gateway: Gateway, slow: StandIn, fresh_upstream: StandIn) -> None:
    slow.reset()
    slow.set_behaviour(tokens=40, token_delay=0.25)  # ~10 s holding m-busy's only slot
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    holding = client.chat.completions.create(model="m-busy", stream=True,
                                             messages=[{"role": "user", "content": "go"}])
    first = next(iter(holding))  # the slot is taken now
    assert first.choices
    done = threading.Event()
    try:
        reply = _count(gateway, {**COUNT_BODY, "model": "m-busy"})
        done.set()
        assert reply.status_code == 200 and reply.json()["input_tokens"] == 7
        assert slow.peak >= 1
    finally:
        holding.close()
    # a provider failing to count: the estimate answers, and the provider is not cooled down
    fresh_upstream.set_behaviour(fail_marker="COUNT-FAILS", status_code=500)
    for _ in range(3):
        reply = _count(gateway, {"model": "m-vllm", "messages": [
            {"role": "user", "content": "COUNT-FAILS please"}]})
        assert reply.status_code == 200 and reply.json()["input_tokens"] > 0
    answer = client.chat.completions.create(model="m-vllm",
                                            messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content


# -- structured output ----------------------------------------------------------------------------
class City(BaseModel):
    name: str
    population: int
    tags: list[str]


@pytest.mark.parametrize("kind", PROVIDERS)
def test_openai_parse_on_every_provider_type(gateway: Gateway, fresh_upstream: StandIn,
                                             kind: str) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    completion = client.chat.completions.parse(
        model=f"m-{kind}", response_format=City,
        messages=[{"role": "user", "content": "describe Paris"}])
    message = completion.choices[0].message
    assert isinstance(message.parsed, City), message.content
    assert not message.tool_calls and completion.choices[0].finish_reason == "stop"
    assert completion.model == f"m-{kind}"
    with client.chat.completions.stream(
            model=f"m-{kind}", response_format=City,
            messages=[{"role": "user", "content": "describe Paris"}]) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, City)
    assert not final.choices[0].message.tool_calls
    if kind == "anthropic":  # one forced tool carries the schema
        sent = _last(fresh_upstream, "/v1/messages")["json"]
        assert sent["tool_choice"] == {"type": "tool", "name": sent["tools"][-1]["name"]}
        assert sent["tools"][-1]["input_schema"]["properties"].keys() == {
            "name", "population", "tags"}
    elif kind == "ollama":
        assert _last(fresh_upstream, "/api/chat")["json"]["format"]["type"] == "object"
    else:
        sent = _last(fresh_upstream, "/v1/chat/completions")["json"]
        assert sent["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("kind", PROVIDERS)
def test_json_object_and_ollama_format_on_every_provider_type(
        gateway: Gateway, fresh_upstream: StandIn, kind: str) -> None:
    reply = requests.post(f"{gateway.url}/v1/chat/completions", timeout=TIMEOUT, json={
        "model": f"m-{kind}", "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "json please"}]})
    assert reply.status_code == 200, reply.text
    assert isinstance(json.loads(reply.json()["choices"][0]["message"]["content"]), dict)
    schema = City.model_json_schema()
    for stream in (False, True):
        reply = requests.post(f"{gateway.url}/api/chat", timeout=TIMEOUT, json={
            "model": f"m-{kind}", "format": schema, "stream": stream,
            "messages": [{"role": "user", "content": "describe Paris"}]})
        assert reply.status_code == 200, reply.text
        lines = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
        text = "".join(line["message"]["content"] for line in lines)
        City.model_validate_json(text)
        assert not any(line["message"].get("tool_calls") for line in lines)
        assert lines[-1]["done_reason"] == "stop"


def test_anthropic_caller_output_format_reaches_other_providers(
        gateway: Gateway, fresh_upstream: StandIn) -> None:
    schema = City.model_json_schema()
    reply = _messages(gateway, {
        "model": "m-vllm", "max_tokens": 100,
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
        "messages": [{"role": "user", "content": "describe Paris"}]})
    assert reply.status_code == 200, reply.text
    City.model_validate_json(reply.json()["content"][0]["text"])
    sent = _last(fresh_upstream, "/v1/chat/completions")["json"]
    assert sent["response_format"]["json_schema"]["schema"] == schema


def test_a_format_no_provider_can_honour_is_a_400_naming_it(gateway: Gateway,
                                                           fresh_upstream: StandIn) -> None:
    for kind in PROVIDERS:
        reply = requests.post(f"{gateway.url}/v1/chat/completions", timeout=TIMEOUT, json={
            "model": f"m-{kind}", "response_format": {"type": "xml"},
            "messages": [{"role": "user", "content": "x"}]})
        if kind in ("openai", "vllm"):  # forwarded: the provider judges its own field
            continue
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == "response_format.type"
    reply = requests.post(f"{gateway.url}/api/generate", timeout=TIMEOUT, json={
        "model": "m-openai", "prompt": "x", "format": "json", "stream": False})
    assert reply.status_code == 400 and "format" in reply.json()["error"]
    for kind in PROVIDERS:
        reply = requests.post(f"{gateway.url}/api/chat", timeout=TIMEOUT, json={
            "model": f"m-{kind}", "format": "yaml", "stream": False,
            "messages": [{"role": "user", "content": "x"}]})
        assert reply.status_code == 400 and reply.json()["error"].startswith("format")


# -- schema conformance and public names --------------------------------------------------------
def _has(obj: dict[str, Any], kind: str) -> None:
    missing = [f for f in REQUIRED[kind] if f not in obj]
    assert not missing, f"{kind} lacks {missing}: {obj}"


def _conforms_chat(body: dict[str, Any]) -> None:
    _has(body, "chat.completion")
    for choice in body["choices"]:
        _has(choice, "chat.completion.choice")
        _has(choice["message"], "chat.completion.message")
        for call in choice["message"].get("tool_calls") or []:
            _has(call, "tool_call")
    _has(body["usage"], "usage")
    ChatCompletion.model_validate(body)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_openai_replies_conform_and_name_the_public_model(
        gateway: Gateway, fresh_upstream: StandIn, kind: str) -> None:
    model = f"m-{kind}"
    url = f"{gateway.url}/v1"
    messages = [{"role": "user", "content": "weather?"}]
    tools = [{"type": "function", "function": {"name": "get_weather",
                                               "parameters": {"type": "object"}}}]
    for extra in ({}, {"tools": tools}):
        reply = requests.post(f"{url}/chat/completions", timeout=TIMEOUT,
                              json={"model": model, "messages": messages, **extra})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        _conforms_chat(body)
        assert body["model"] == model
        assert "X-LLM-Router-Provider" not in reply.headers
        reply = requests.post(f"{url}/chat/completions", timeout=TIMEOUT, json={
            "model": model, "messages": messages, "stream": True,
            "stream_options": {"include_usage": True}, **extra})
        frames = [json.loads(line[5:]) for line in reply.text.splitlines()
                  if line.startswith("data:") and line.strip() != "data: [DONE]"]
        assert frames
        for frame in frames:
            _has(frame, "chat.completion.chunk")
            for choice in frame["choices"]:
                _has(choice, "chat.completion.chunk.choice")
            ChatCompletionChunk.model_validate(frame)
            assert frame["model"] == model
    reply = requests.post(f"{url}/completions", timeout=TIMEOUT,
                          json={"model": model, "prompt": "hi"})
    body = reply.json()
    _has(body, "text_completion")
    _has(body["choices"][0], "text_completion.choice")
    assert body["model"] == model


@pytest.mark.parametrize("kind", ("ollama", "anthropic"))
def test_same_protocol_replies_name_the_public_model(gateway: Gateway, fresh_upstream: StandIn,
                                                    kind: str) -> None:
    if kind == "ollama":
        for stream in (False, True):
            reply = requests.post(f"{gateway.url}/api/chat", timeout=TIMEOUT, json={
                "model": "m-ollama", "stream": stream,
                "messages": [{"role": "user", "content": "x"}]})
            lines = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
            assert lines and all(line["model"] == "m-ollama" for line in lines)
        return
    for stream in (False, True):
        reply = _messages(gateway, {"model": "m-anthropic", "max_tokens": 10, "stream": stream,
                                    "messages": [{"role": "user", "content": "x"}]})
        assert b"up-anthropic" not in reply.content
        assert b"m-anthropic" in reply.content


# -- Ollama fidelity ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", PROVIDERS)
def test_ollama_load_and_unload_calls(gateway: Gateway, fresh_upstream: StandIn,
                                      kind: str) -> None:
    client = ollama.Client(host=gateway.url, timeout=TIMEOUT)
    loaded = client.generate(model=f"m-{kind}")
    assert loaded.done and loaded.done_reason == "load" and loaded.model == f"m-{kind}"
    unloaded = client.chat(model=f"m-{kind}", messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload" and unloaded.message.content == ""
    streamed = requests.post(f"{gateway.url}/api/chat", timeout=TIMEOUT,
                             json={"model": f"m-{kind}", "keep_alive": "0"})
    assert [json.loads(line)["done_reason"] for line in streamed.text.splitlines()] == [
        "unload"]
    sent = [r for r in fresh_upstream.requests if r["path"] in ("/api/generate", "/api/chat")]
    if kind != "ollama":  # answered here: no upstream call at all
        assert fresh_upstream.requests == []
        return
    assert [(r["path"], r["json"].get("keep_alive"), r["json"]["model"]) for r in sent] == [
        ("/api/generate", None, "up-ollama"), ("/api/chat", 0, "up-ollama"),
        ("/api/chat", "0", "up-ollama")]
    assert not sent[0]["json"].get("prompt") and sent[1]["json"]["messages"] == []


def test_ollama_load_call_failure_is_an_ollama_error(gateway: Gateway,
                                                     fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="status", status_code=500, generation_only=True)
    reply = requests.post(f"{gateway.url}/api/generate", json={"model": "m-ollama"},
                          timeout=TIMEOUT)
    assert reply.status_code >= 500 and isinstance(reply.json()["error"], str)


def test_ollama_show_reports_context_length_and_capabilities(gateway: Gateway,
                                                             fresh_upstream: StandIn) -> None:
    client = ollama.Client(host=gateway.url, timeout=TIMEOUT)
    shown = client.show("m-vllm")
    family = shown.details.family if shown.details else ""
    assert shown.modelinfo is not None and shown.modelinfo[f"{family}.context_length"] == 8192
    assert list(shown.capabilities or []) == ["completion", "tools"]
    busy = requests.post(f"{gateway.url}/api/show", json={"model": "m-busy"}, timeout=TIMEOUT)
    assert busy.json()["capabilities"] == ["completion"]  # not marked tool_calling
    assert not any(k.endswith(".context_length") for k in busy.json()["model_info"])


def test_ollama_ps_lists_what_ollama_providers_report_loaded(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    fast = SimParams(prefill_per_char=0.0, load_seconds=0.0)
    sims = {name: StandIn(name=name, sim=ServerSim(fast.updated(model=f"up-{name}",
                                                                loaded=name == "warm")))
            for name in ("warm", "cold")}
    for sim in sims.values():
        sim.start()
    models = {f"m-{name}": [{"id": f"p-{name}", "api_host": sim.url, "api_type": "ollama",
                             "model_path": f"up-{name}"}] for name, sim in sims.items()}
    models["m-other"] = [{"id": "p-other", "api_host": sims["warm"].url, "api_type": "vllm"}]
    config = write_config(tmp_path_factory.mktemp("ps"), models)
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2",
                     LLM_ROUTER_BALANCE_STRATEGY="cache_aware",
                     LLM_ROUTER_LOAD_POLL_INTERVAL="0.5")
    try:
        def listed() -> set[str]:
            reply = requests.get(f"{server.url}/api/ps", timeout=TIMEOUT)
            return {m["name"] for m in reply.json()["models"]}

        # every worker answers from its own poller: ask several times until all agree
        wait_for(lambda: all(listed() == {"m-warm", "m-other"} for _ in range(6)), 30,
                 "/api/ps to list the loaded models only")
    finally:
        server.stop()
        for sim in sims.values():
            sim.stop()


@pytest.mark.parametrize("kind", PROVIDERS)
def test_embeddings_conform(gateway: Gateway, fresh_upstream: StandIn, kind: str) -> None:
    reply = requests.post(f"{gateway.url}/v1/embeddings", timeout=TIMEOUT,
                          json={"model": f"m-{kind}", "input": ["a", "b"]})
    if kind == "anthropic":  # no embeddings API: the caller's 400
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"
        return
    body = reply.json()
    for field in ("object", "model", "data", "usage"):
        assert field in body, field
    assert body["model"] == f"m-{kind}"
    assert all({"index", "object", "embedding"} <= item.keys() for item in body["data"])
    assert {"prompt_tokens", "total_tokens"} <= body["usage"].keys()
    openai.types.CreateEmbeddingResponse.model_validate(body)


def test_provider_header_only_when_exposed(upstream: StandIn,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    config = write_config(tmp_path_factory.mktemp("expose"), {"m": [
        {"id": "p-secret-id", "api_host": upstream.url, "api_type": "openai",
         "model_path": "org/weights-v3"}]})
    for exposed in ("1", "0"):
        server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKERS_COUNT="1",
                         LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                         LLM_ROUTER_EXPOSE_PROVIDER=exposed)
        try:
            for stream in (False, True):
                reply = requests.post(f"{server.url}/v1/chat/completions", timeout=TIMEOUT,
                                      json={"model": "m", "stream": stream,
                                            "messages": [{"role": "user", "content": "x"}]})
                assert reply.status_code == 200
                assert reply.headers.get("X-LLM-Router-Provider") == (
                    "p-secret-id" if exposed == "1" else None)
                assert b"org/weights-v3" not in reply.content and b'"m"' in reply.content
        finally:
            server.stop()


def test_count_tokens_is_not_a_generation_for_key_limits(
        upstream: StandIn, redis_server: RedisServer,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A key allowed one request a minute still counts tokens as often as it likes; a key not
    allowed the model is refused (403) there too."""
    directory = tmp_path_factory.mktemp("keys")
    keys = directory / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"id": "one-a-minute", "key": "sk-one-a-minute", "requests_per_minute": 1},
        {"id": "other-model", "key": "sk-other-model", "models": ["m-elsewhere"]}]}))
    config = write_config(directory, {
        "m": [{"id": "p", "api_host": upstream.url, "api_type": "vllm"}],
        "m-elsewhere": [{"id": "p2", "api_host": upstream.url, "api_type": "openai"}]})
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                     LLM_ROUTER_API_KEYS_FILE=str(keys))
    try:
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

        def post(path: str, key: str) -> requests.Response:
            return requests.post(server.url + path, json=body, timeout=TIMEOUT,
                                 headers={"x-api-key": key})

        assert post("/v1/messages", "sk-one-a-minute").status_code == 200
        assert post("/v1/messages", "sk-one-a-minute").status_code == 429
        for _ in range(3):
            counted = post("/v1/messages/count_tokens", "sk-one-a-minute")
            assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
        refused = post("/v1/messages/count_tokens", "sk-other-model")
        assert refused.status_code == 403 and refused.json()["type"] == "error"
        assert post("/v1/messages/count_tokens", "sk-wrong-key").status_code == 401
    finally:
        server.stop()
