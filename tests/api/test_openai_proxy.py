"""End to end: the gateway as a real server process, a stand-in upstream as a real HTTP server,
the official ``openai`` client in front."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, free_port, write_config

TOKEN = "sk-test-provider-token-123"
MAX_BODY = 4096


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("openai-proxy")
    config = write_config(directory, {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai",
                "api_token": TOKEN, "model_path": "upstream-m1",
                "options": {"temperature": 0.1, "presence_penalty": 0.5}}],
        "v1": [{"id": "v1-up", "api_host": upstream.url, "api_type": "vllm"}],
        # Its own provider, so a Retry-After cool-down does not touch the other tests.
        "cooling": [{"id": "cooling-up", "api_host": upstream.url, "api_type": "openai"}],
        "down": [{"id": "down-up", "api_host": f"http://127.0.0.1:{free_port()}",
                  "api_type": "openai"}],
    })
    server = Gateway(config, LLM_ROUTER_EXTERNAL_TIMEOUT="1", LLM_ROUTER_COOLDOWN="0",
                     LLM_ROUTER_MAX_REQUEST_BODY_SIZE=str(MAX_BODY))
    yield server
    server.stop()
    assert TOKEN not in server.output()


@pytest.fixture()
def client(gateway: Gateway, fresh_upstream: StandIn) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def chat(gateway: Gateway, body: object, path: str = "/v1/chat/completions",
         **kwargs: object) -> requests.Response:
    return requests.post(gateway.url + path, json=body, timeout=10, **kwargs)  # type: ignore[arg-type]


MESSAGES = [{"role": "user", "content": "hello there"}]


def test_non_stream_chat_reaches_upstream_with_model_path_token_and_fields(
        client: openai.OpenAI, upstream: StandIn) -> None:
    reply = client.chat.completions.create(model="m1", messages=MESSAGES,  # type: ignore[arg-type]
                                           temperature=0.7, seed=42, stop=["END"],
                                           extra_body={"custom_field": {"a": 1}})
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {TOKEN}"
    body = sent["json"]
    assert body["model"] == "upstream-m1"
    assert body["temperature"] == 0.7  # the caller wins over provider options
    assert body["presence_penalty"] == 0.5  # provider options fill what the caller left unset
    assert body["seed"] == 42 and body["stop"] == ["END"]
    assert body["custom_field"] == {"a": 1}
    assert body["messages"] == MESSAGES


def test_stream_chat_passes_chunks_through_and_ends_with_done(
        client: openai.OpenAI, gateway: Gateway) -> None:
    stream = client.chat.completions.create(model="m1", messages=MESSAGES,  # type: ignore[arg-type]
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    raw = chat(gateway, {"model": "m1", "messages": MESSAGES, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_prefixed_alias_and_vllm_only_fields(gateway: Gateway, fresh_upstream: StandIn) -> None:
    body = {"model": "v1", "messages": MESSAGES, "top_k": 5, "repetition_penalty": 1.1}
    assert chat(gateway, body, path="/api/chat/completions").status_code == 200
    sent = fresh_upstream.requests[-1]["json"]
    assert sent["top_k"] == 5 and sent["repetition_penalty"] == 1.1 and sent["model"] == "v1"
    assert chat(gateway, {**body, "model": "m1"}).status_code == 200
    assert "top_k" not in fresh_upstream.requests[-1]["json"]  # openai providers do not take it


def assert_openai_error(response: requests.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert "Traceback" not in response.text and TOKEN not in response.text
    return error  # type: ignore[no-any-return]


def test_malformed_json_is_400(gateway: Gateway) -> None:
    response = requests.post(gateway.url + "/v1/chat/completions", data=b"{nope",
                             headers={"Content-Type": "application/json"}, timeout=5)
    assert_openai_error(response, 400)
    assert_openai_error(requests.post(gateway.url + "/v1/chat/completions", data=b"[1]",
                                      timeout=5), 400)


@pytest.mark.parametrize("body,field", [
    ({"model": "m1"}, "messages"),
    ({"messages": MESSAGES}, "model"),
    ({"model": "m1", "messages": MESSAGES, "stream": "yes"}, "stream"),
    ({"model": 7, "messages": MESSAGES}, "model"),
    ({"model": "m1", "messages": [{"content": "no role"}]}, "messages.0.role"),
])
def test_validation_names_the_field(gateway: Gateway, body: object, field: str) -> None:
    error = assert_openai_error(chat(gateway, body), 400)
    assert error["param"] == field
    assert field in str(error["message"])


def test_unknown_model_route_and_method(gateway: Gateway) -> None:
    error = assert_openai_error(chat(gateway, {"model": "nope", "messages": MESSAGES}), 404)
    assert error["code"] == "model_not_found"
    assert_openai_error(requests.get(gateway.url + "/v1/nothing-here", timeout=5), 404)
    assert_openai_error(requests.get(gateway.url + "/v1/chat/completions", timeout=5), 405)


def test_oversize_body_is_413_from_content_length(gateway: Gateway) -> None:
    big = {"model": "m1", "messages": [{"role": "user", "content": "x" * MAX_BODY}]}
    response = chat(gateway, big)
    assert_openai_error(response, 413)
    assert "close" in response.headers.get("connection", "").lower()


def test_upstream_unreachable_is_502(gateway: Gateway) -> None:
    error = assert_openai_error(chat(gateway, {"model": "down", "messages": MESSAGES}), 502)
    assert "127.0.0.1" not in str(error["message"])


def test_upstream_silence_is_504(gateway: Gateway, fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="hang")
    assert_openai_error(chat(gateway, {"model": "m1", "messages": MESSAGES}), 504)


def test_upstream_client_error_is_passed_through(gateway: Gateway,
                                                 fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="status", status_code=422)
    assert_openai_error(chat(gateway, {"model": "m1", "messages": MESSAGES}), 422)
    fresh_upstream.set_behaviour(mode="status", status_code=400)
    assert_openai_error(chat(gateway, {"model": "m1", "messages": MESSAGES}), 400)


@pytest.mark.parametrize("status,expected", [(500, 502), (503, 502), (401, 502), (429, 429)])
def test_upstream_failures_map_to_gateway_statuses(gateway: Gateway, fresh_upstream: StandIn,
                                                   status: int, expected: int) -> None:
    fresh_upstream.set_behaviour(mode="status", status_code=status, retry_after=3)
    response = chat(gateway, {"model": "cooling", "messages": MESSAGES})
    error = assert_openai_error(response, expected)
    if status == 401:
        assert error["message"] == "provider rejected the request"
    if expected == 429:
        assert response.headers["retry-after"] == "3"


def test_garbage_from_upstream_is_502(gateway: Gateway, fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="garbage")
    assert_openai_error(chat(gateway, {"model": "m1", "messages": MESSAGES}), 502)


def test_stream_dying_midway_ends_with_one_error_event(gateway: Gateway,
                                                       fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="die_mid_stream", die_after=3)
    response = chat(gateway, {"model": "m1", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    frames = [f for f in response.text.split("\n\n") if f.strip()]
    assert frames[-1] == "data: [DONE]"
    assert frames[-2].startswith('data: {"error"')
    assert sum('"error"' in f for f in frames) == 1
    assert sum("chat.completion.chunk" in f for f in frames) == 3


def test_request_id_is_returned_and_generated(gateway: Gateway) -> None:
    given = requests.get(gateway.url + "/api/ping", headers={"X-Request-ID": "abc-123"},
                         timeout=5)
    assert given.headers["x-request-id"] == "abc-123"
    assert len(requests.get(gateway.url + "/api/ping", timeout=5).headers["x-request-id"]) >= 16


@pytest.mark.parametrize("given", ["x" * 129, "a" * 500, "tab\there"])
def test_an_invalid_request_id_is_replaced_by_a_generated_one(gateway: Gateway,
                                                              given: str) -> None:
    answer = requests.get(gateway.url + "/api/ping", headers={"X-Request-ID": given}, timeout=5)
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"]), answer.headers


def test_a_request_id_of_exactly_128_characters_is_kept(gateway: Gateway) -> None:
    given = "r" * 128
    answer = requests.get(gateway.url + "/api/ping", headers={"X-Request-ID": given}, timeout=5)
    assert answer.headers["x-request-id"] == given


def test_info_endpoints(gateway: Gateway) -> None:
    assert requests.get(gateway.url + "/api/ping", timeout=5).json() == {"status": "ok"}
    assert "version" in requests.get(gateway.url + "/api/version", timeout=5).json()
    models = requests.get(gateway.url + "/v1/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["m1", "v1", "cooling", "down"]
    assert requests.get(gateway.url + "/v1/models/m1", timeout=5).json()["id"] == "m1"
    tags = requests.get(gateway.url + "/api/tags", timeout=5)
    assert TOKEN not in tags.text and "127.0.0.1" not in tags.text
    assert {m["name"] for m in tags.json()["models"]} == {"m1", "v1", "cooling", "down"}
    assert requests.get(gateway.url + "/", timeout=5).text == "Ollama is running"


def test_raw_socket_garbage_does_not_crash(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
        sock.recv(1024)
    assert requests.get(gateway.url + "/api/ping", timeout=5).status_code == 200


def test_config_error_stops_startup_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"g": {"a": {"providers": [{"id": "x"}]}}, "active_models": {"g": ["a"]}}')
    with pytest.raises(RuntimeError) as caught:
        Gateway(bad)
    assert f"{bad}: $.g.a.providers[0].api_host" in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_options_is_an_empty_204_with_allow(gateway: Gateway) -> None:
    response = requests.options(gateway.url + "/v1/chat/completions", timeout=5)
    assert response.status_code == 204
    assert set(response.headers["allow"].split(", ")) == {"OPTIONS", "POST"}
    assert "html" not in response.headers.get("content-type", "")
