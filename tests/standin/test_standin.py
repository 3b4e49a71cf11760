"""The stand-in upstream server, checked with raw HTTP and the official clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from standin import Behaviour, StandIn
from tests.support.procs import wait_for

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
ollama = pytest.importorskip("ollama")

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "what is the weather"}]
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object"}}]
TEXT = "tok0 tok1 tok2 tok3 tok4 "


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    with StandIn(name="up1") as stand_in:
        yield stand_in


@pytest.fixture()
def stand(server: StandIn) -> StandIn:
    server.reset()
    return server


@pytest.fixture(scope="module")
def oc(server: StandIn) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture(scope="module")
def ac(server: StandIn) -> Iterator[Any]:
    with anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture(scope="module")
def lc(server: StandIn) -> Iterator[Any]:
    with ollama.Client(host=server.url, timeout=5) as c:
        yield c


def raw(stand: StandIn, payload: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", stand.port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


# -- OpenAI -------------------------------------------------------------------
def test_openai_chat_non_stream(stand: StandIn, oc: Any) -> None:
    resp = oc.chat.completions.with_raw_response.create(model="gpt-x", messages=USER)
    assert resp.headers["x-standin-name"] == "up1"
    out = resp.parse()
    assert out.id.startswith("chatcmpl-") and out.object == "chat.completion"
    assert out.model == "gpt-x"
    assert out.choices[0].message.content == TEXT
    assert out.choices[0].finish_reason == "stop"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (
        4,
        5,
        9,
    )
    rec = stand.requests[-1]
    assert rec["method"] == "POST" and rec["path"] == "/v1/chat/completions"
    assert rec["json"]["model"] == "gpt-x" and rec["headers"]["authorization"] == "Bearer k"


def test_openai_chat_stream_with_usage(stand: StandIn, oc: Any) -> None:
    chunks = list(
        oc.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len({c.id for c in chunks}) == 1
    assert (
        chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_openai_stream_wire_and_max_tokens(stand: StandIn, oc: Any) -> None:
    body = {"model": "m", "messages": USER, "stream": True, "max_tokens": 2}
    resp = requests.post(stand.url + "/v1/chat/completions", json=body, timeout=5)
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["transfer-encoding"] == "chunked"
    frames = resp.text.split("\n\n")
    assert frames[-2] == "data: [DONE]" and frames[-1] == ""
    last = json.loads(frames[-3][len("data: ") :])
    assert last["choices"][0]["finish_reason"] == "length"
    assert len(frames) == 1 + 2 + 1 + 1 + 1  # role, 2 tokens, final, [DONE], tail
    out = oc.chat.completions.create(model="m", messages=USER, max_completion_tokens=3)
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 3


def test_openai_tool_call(stand: StandIn, oc: Any) -> None:
    client = oc
    out = client.chat.completions.create(model="m", messages=USER, tools=OPENAI_TOOLS)
    call = out.choices[0].message.tool_calls[0]
    assert out.choices[0].finish_reason == "tool_calls" and out.choices[0].message.content is None
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    chunks = list(
        client.chat.completions.create(model="m", messages=USER, tools=OPENAI_TOOLS, stream=True)
    )
    first = chunks[0].choices[0].delta.tool_calls[0]
    assert first.id and first.function.name == "get_weather" and first.function.arguments == ""
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments
        for c in chunks[1:]
        if c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"location": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # after the tool result, the model answers in text
    history = [*USER, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    again = client.chat.completions.create(model="m", messages=history, tools=OPENAI_TOOLS)
    assert again.choices[0].message.content == TEXT


def test_openai_echo_and_completions_and_models(stand: StandIn, oc: Any) -> None:
    stand.set_behaviour(echo=True)
    client = oc
    out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b"}])
    assert out.choices[0].message.content == "a b "
    legacy = client.completions.create(model="m", prompt="x y z")
    assert legacy.object == "text_completion" and legacy.choices[0].text == "x y z "
    streamed = list(client.completions.create(model="m", prompt="p q", stream=True))
    assert "".join(c.choices[0].text for c in streamed) == "p q "
    assert streamed[-1].choices[0].finish_reason == "stop"
    assert [m.id for m in client.models.list()] == ["standin"]


def test_openai_embeddings(stand: StandIn, oc: Any) -> None:
    client = oc
    out = client.embeddings.create(model="e", input=["hello world", "x"])  # base64 on the wire
    assert [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == 4
    floats = client.embeddings.create(model="e", input="hello world", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(out.data[0].embedding, abs=1e-6)
    assert out.model == "e" and out.usage.prompt_tokens == 3
    stand.set_behaviour(embedding_dim=8)
    assert len(client.embeddings.create(model="e", input="x").data[0].embedding) == 8


# -- Ollama -------------------------------------------------------------------
def test_ollama_chat_stream_and_not(stand: StandIn, lc: Any) -> None:
    client = lc
    parts = list(client.chat(model="llama3", messages=USER, stream=True))
    assert "".join(p.message.content for p in parts) == TEXT
    assert [p.done for p in parts] == [False] * 5 + [True]
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 5
    assert parts[-1].prompt_eval_count == 4 and parts[-1].total_duration > 0
    whole = client.chat(model="llama3", messages=USER, options={"num_predict": 2})
    assert whole.message.content == "tok0 tok1 " and whole.done_reason == "length"
    assert whole.model == "llama3"
    resp = requests.post(stand.url + "/api/chat", json={"model": "m", "messages": USER}, timeout=5)
    assert resp.headers["content-type"] == "application/x-ndjson"  # stream defaults to true
    assert len(resp.text.strip().split("\n")) == 6


def test_ollama_generate_embed_and_meta(stand: StandIn, lc: Any) -> None:
    client = lc
    parts = list(client.generate(model="m", prompt="hi", stream=True))
    assert "".join(p.response for p in parts) == TEXT and parts[-1].done
    whole = client.generate(model="m", prompt="hi")
    assert whole.response == TEXT and whole.done_reason == "stop"
    emb = client.embed(model="m", input=["a", "b c"])
    assert len(emb.embeddings) == 2 and len(emb.embeddings[0]) == 4
    assert emb.prompt_eval_count == 3
    assert client.list().models[0].model == "standin:latest"
    assert requests.get(stand.url + "/api/version", timeout=5).json() == {"version": "0.5.0"}
    root = requests.get(stand.url + "/", timeout=5)
    assert root.text == "Ollama is running" and root.headers["content-type"].startswith("text/")


def test_ollama_tool_call(stand: StandIn, lc: Any) -> None:
    client = lc
    whole = client.chat(model="m", messages=USER, tools=OPENAI_TOOLS)
    call = whole.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == {"location": "Paris"}
    parts = list(client.chat(model="m", messages=USER, tools=OPENAI_TOOLS, stream=True))
    assert parts[0].message.tool_calls[0].function.arguments == {"location": "Paris"}
    assert parts[-1].done
    stand.set_behaviour(tool_call=False)
    assert client.chat(model="m", messages=USER, tools=OPENAI_TOOLS).message.content == TEXT


# -- Anthropic ----------------------------------------------------------------
def test_anthropic_messages(stand: StandIn, ac: Any) -> None:
    client = ac
    msg = client.messages.create(model="claude-x", max_tokens=100, messages=USER, system="be nice")
    assert msg.id.startswith("msg_") and msg.model == "claude-x" and msg.role == "assistant"
    assert msg.content[0].text == TEXT and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (6, 5)
    capped = client.messages.create(model="c", max_tokens=2, messages=USER)
    assert capped.stop_reason == "max_tokens" and capped.content[0].text == "tok0 tok1 "
    resp = requests.post(stand.url + "/v1/messages", json={"model": "c", "messages": USER})
    assert resp.status_code == 400
    assert resp.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


def test_anthropic_stream_order(stand: StandIn, ac: Any) -> None:
    with ac.messages.stream(model="c", max_tokens=50, messages=USER) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert final.content[0].text == TEXT and final.usage.output_tokens == 5
    body = {"model": "c", "max_tokens": 50, "messages": USER, "stream": True}
    text = requests.post(stand.url + "/v1/messages", json=body, timeout=5).text
    names = [f.split("\n")[0].removeprefix("event: ") for f in text.strip().split("\n\n")]
    expected = ["message_start", "content_block_start", "ping"]
    expected += ["content_block_delta"] * 5 + ["content_block_stop", "message_delta"]
    assert names == [*expected, "message_stop"]
    assert "content_block_delta" in events and "message_stop" in events


def test_anthropic_tool_use(stand: StandIn, ac: Any) -> None:
    client = ac
    msg = client.messages.create(model="c", max_tokens=50, messages=USER, tools=ANTHROPIC_TOOLS)
    block = msg.content[0]
    assert msg.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.id.startswith("toolu_") and block.name == "get_weather"
    assert block.input == {"location": "Paris"}
    kwargs = {"model": "c", "max_tokens": 50, "messages": USER, "tools": ANTHROPIC_TOOLS}
    with client.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"location": "Paris"} and final.stop_reason == "tool_use"
    result = {"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}
    history = [*USER, {"role": "assistant", "content": [block.model_dump()]}]
    history.append({"role": "user", "content": [result]})
    again = client.messages.create(
        model="c", max_tokens=50, messages=history, tools=ANTHROPIC_TOOLS
    )
    assert again.content[0].type == "text"


# -- failure modes ------------------------------------------------------------
def test_status_mode_native_errors(stand: StandIn, oc: Any, ac: Any, lc: Any) -> None:
    stand.set_behaviour(mode="status", status_code=429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as oerr:
        oc.chat.completions.create(model="m", messages=USER)
    assert oerr.value.response.headers["retry-after"] == "2"
    assert set(oerr.value.body) >= {"message", "type", "param", "code"}
    with pytest.raises(anthropic.RateLimitError) as aerr:
        ac.messages.create(model="c", max_tokens=5, messages=USER)
    assert aerr.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(ollama.ResponseError) as lerr:
        lc.chat(model="m", messages=USER, stream=False)
    assert lerr.value.status_code == 429
    stand.set_behaviour(status_code=503, retry_after=None)
    resp = requests.post(stand.url + "/api/generate", json={"model": "m"}, timeout=5)
    assert resp.status_code == 503 and "retry-after" not in resp.headers
    assert set(resp.json()) == {"error"}


def test_reset_mode(stand: StandIn, oc: Any) -> None:
    stand.set_behaviour(mode="reset")
    with pytest.raises(requests.ConnectionError):
        requests.post(stand.url + "/v1/chat/completions", json={"messages": USER}, timeout=5)
    with pytest.raises(openai.APIConnectionError):
        oc.chat.completions.create(model="m", messages=USER)
    assert stand.count == 2


def test_hang_mode(stand: StandIn, oc: Any) -> None:
    stand.set_behaviour(mode="hang")
    start = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.post(stand.url + "/api/chat", json={"messages": USER}, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        oc.with_options(timeout=0.3).chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - start < 3


def test_die_mid_stream(stand: StandIn, oc: Any, lc: Any) -> None:
    stand.set_behaviour(mode="die_mid_stream", die_after=3)
    got: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oc.chat.completions.create(model="m", messages=USER, stream=True):
            got.append(chunk)
    assert len(got) == 3
    with pytest.raises(Exception):  # noqa: B017 - httpx's incomplete-chunk error
        list(lc.chat(model="m", messages=USER, stream=True))
    with pytest.raises(requests.ConnectionError):  # non-stream: closed without a response
        requests.post(stand.url + "/v1/chat/completions", json={"messages": USER}, timeout=5)
    body = json.dumps({"model": "m", "stream": True, "messages": USER}).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    data = raw(stand, head % len(body) + body)
    assert data.count(b"data: ") == 3 and not data.endswith(b"0\r\n\r\n")


def test_garbage_mode(stand: StandIn, oc: Any, ac: Any, lc: Any) -> None:
    stand.set_behaviour(mode="garbage")
    resp = requests.post(stand.url + "/v1/chat/completions", json={"messages": USER}, timeout=5)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    with pytest.raises(Exception):  # noqa: B017 - client-specific decode errors
        list(oc.chat.completions.create(model="m", messages=USER, stream=True))
    with pytest.raises(Exception):  # noqa: B017
        list(lc.chat(model="m", messages=USER, stream=True))
    stream_call = ac.messages.stream(model="c", max_tokens=5, messages=USER)
    with pytest.raises(Exception), stream_call as stream:  # noqa: B017
        stream.get_final_message()


def test_delays(stand: StandIn) -> None:
    stand.set_behaviour(first_delay=0.2, token_delay=0.05)
    start = time.monotonic()
    resp = requests.post(
        stand.url + "/v1/chat/completions",
        json={"messages": USER, "stream": True},
        stream=True,
        timeout=5,
    )
    with resp:
        lines = resp.iter_lines()
        next(lines)
        first = time.monotonic() - start
        list(lines)
        total = time.monotonic() - start
    assert 0.2 <= first < 0.3
    assert total >= 0.2 + 0.05 * 7  # 8 frames: role, 5 tokens, final, [DONE]


# -- HTTP details, control routes, lifecycle ----------------------------------
def test_keep_alive_and_connection_close(stand: StandIn) -> None:
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(stand.url + "/v1/models", timeout=5).status_code == 200
    data = raw(stand, b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in data
    assert data.endswith(b'{"version":"0.5.0"}')
    assert raw(stand, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_errors_for_bad_requests(stand: StandIn) -> None:
    resp = requests.post(stand.url + "/v1/chat/completions", data=b"{nope", timeout=5)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert requests.get(stand.url + "/v1/nothing", timeout=5).status_code == 404
    assert requests.get(stand.url + "/v1/chat/completions", timeout=5).status_code == 405


def test_control_stats_reset(stand: StandIn) -> None:
    url = stand.url
    assert requests.post(url + "/_control", json={"tokens": 2, "echo": False}).json() == {
        "ok": True
    }
    assert stand.behaviour.tokens == 2
    assert requests.post(url + "/_control", json={"nope": 1}).status_code == 400
    assert requests.post(url + "/_control", json={"mode": "bogus"}).status_code == 400
    requests.post(url + "/_control", json={"mode": "status"})
    requests.post(url + "/api/generate", json={"model": "m", "prompt": "p"})
    stats = requests.get(url + "/_stats").json()  # control routes ignore mode
    assert stats["name"] == "up1" and stats["count"] == 1
    assert stats["requests"][0]["json"] == {"model": "m", "prompt": "p"}
    assert requests.post(url + "/_reset").json() == {"ok": True}
    assert stand.behaviour == Behaviour() and stand.requests == []
    with pytest.raises(ValueError):
        stand.set_behaviour(colour="red")


def test_stop_releases_hung_connections() -> None:
    stand = StandIn(name="hung", behaviour=Behaviour(mode="hang"))
    port = stand.start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
        except requests.RequestException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    wait_for(lambda: stand.probes > 0, 5, "the call to reach the stand-in")
    start = time.monotonic()
    stand.stop()
    worker.join(5)
    assert errors and time.monotonic() - start < 2


def test_cli_process() -> None:
    cmd = [sys.executable, "-m", "standin", "--port", "0", "--name", "cli1", "--tokens", "3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("standin cli1 listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        resp = requests.post(url + "/api/generate", timeout=5,
                             json={"model": "m", "prompt": "hi", "stream": False})
        assert resp.json()["response"] == "tok0 tok1 tok2 "
        assert resp.headers["x-standin-name"] == "cli1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
