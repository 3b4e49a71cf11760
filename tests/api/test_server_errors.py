"""Every error body is JSON in the caller's shape, what the HTTP server itself answers included
(SPEC §13): malformed request lines, URIs and headers too large, bad chunk sizes, odd slashes,
JSON nested too deep, huge echoed values. Sent over raw sockets, under gunicorn+gevent (the
production server), waitress, gthread and the flask server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, write_config
from tests.support.rawhttp import RawReply, exchange

SERVERS = {
    "gunicorn-gevent": ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gevent"}),
    "waitress": ("waitress", {}),
    "gunicorn-gthread": ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gthread"}),
    "flask": ("flask", {}),
}
CHAT = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module", params=list(SERVERS))
def gateway(request: pytest.FixtureRequest, upstream: StandIn,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: Path = write_config(tmp_path_factory.mktemp("errors"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})
    server_type, env = SERVERS[request.param]
    server = Gateway(config, server_type=server_type, LLM_ROUTER_SERVER_WORKERS_COUNT="1",
                     LLM_ROUTER_CLIENT_TIMEOUT="5", **env)
    yield server
    server.stop()
    assert "Traceback" not in server.output()


def post(path: bytes, body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def assert_json_error(reply: RawReply, status: int | tuple[int, ...], shape: str) -> str:
    """The answer is a JSON error in ``shape`` (openai, ollama, anthropic); returns its
    message."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert reply.status in statuses, reply.raw[:400]
    assert reply.headers.get("content-type") == "application/json", reply.raw[:400]
    assert b"<html" not in reply.body.lower() and b"Traceback" not in reply.body
    body = reply.json()
    if shape == "ollama or openai":
        shape = "ollama" if isinstance(body["error"], str) else "openai"
    if shape == "ollama":
        assert isinstance(body["error"], str)
        return str(body["error"])
    if shape == "anthropic":
        assert body["type"] == "error" and isinstance(body["error"]["message"], str)
        return str(body["error"]["message"])
    assert isinstance(body["error"]["message"], str) and "type" in body["error"]
    return str(body["error"]["message"])


MALFORMED = {
    "request line": (b"GARBAGE\r\n\r\n", 400, "openai"),
    "bad method": (b"G@T /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", (400, 405), "openai"),
    "bad http version": (b"GET /v1/models HTTP/7.q\r\nHost: x\r\n\r\n", (400, 505), "openai"),
    "uri too long": (b"GET /v1/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     (414, 404), "openai"),
    # (Ollama's shape when the server kept the path it read first, else the default OpenAI one)
    "header too large": (b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 300000
                         + b"\r\n\r\n", (400, 431), "ollama or openai"),
    "bad header name": (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
                        (400, 200), "openai"),
    "bad chunk size (ollama)": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                b"chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "ollama"),
    "bad chunk size (anthropic)": (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:"
                                   b" chunked\r\n\r\n5;\x00\r\nabc\r\n0\r\n\r\n", 400,
                                   "anthropic"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_servers_own_refusals_are_json(gateway: Gateway, case: str) -> None:
    data, status, shape = MALFORMED[case]
    reply = exchange(gateway.port, data)
    if reply.status == 200:  # a server that accepts it (e.g. an odd header name) answers it
        assert reply.headers["content-type"] == "application/json"
        return
    assert_json_error(reply, status, shape)
    assert requests.get(gateway.url + "/api/ping", timeout=5).ok


@pytest.mark.parametrize("path", [b"//v1/chat/completions", b"/v1//chat/completions",
                                  b"//v1///chat//completions", b"/v1/chat/completions/"])
def test_odd_slashes_are_served_never_redirected(gateway: Gateway, path: bytes) -> None:
    reply = exchange(gateway.port, post(path, CHAT))
    assert reply.status == 200, reply.raw[:400]
    assert reply.json()["object"] == "chat.completion"


def test_unknown_odd_path_is_a_json_404(gateway: Gateway) -> None:
    reply = exchange(gateway.port, post(b"//nowhere//at/all", CHAT))
    assert "no route" in assert_json_error(reply, 404, "openai")


def test_a_refusal_that_leaves_the_body_unread_still_arrives(gateway: Gateway) -> None:
    """An unknown path answers without reading the (chunked) body; closing the connection must
    not reset it before the client has read the answer."""
    data = (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"4000\r\n" + b"y" * 0x4000 + b"\r\n0\r\n\r\n")
    for _ in range(5):
        assert "no route" in assert_json_error(exchange(gateway.port, data), 404, "openai")


def nested(depth: int) -> bytes:
    """A chat body nesting ``depth`` containers (the body object is level 1)."""
    inner = "[" * (depth - 1) + "1" + "]" * (depth - 1)
    return (b'{"model":"m1","messages":[{"role":"user","content":"hi"}],"x":' + inner.encode()
            + b"}")


@pytest.mark.parametrize("depth", [129, 300, 1024, 1100, 100000])
def test_json_nested_deeper_than_128_is_a_400(gateway: Gateway, depth: int) -> None:
    reply = exchange(gateway.port, post(b"/v1/chat/completions", nested(depth)))
    message = assert_json_error(reply, (400, 413), "openai")
    if reply.status == 400:
        assert "nested deeper than 128" in message


def test_json_nested_128_deep_is_accepted(gateway: Gateway) -> None:
    reply = exchange(gateway.port, post(b"/v1/chat/completions", nested(128)))
    assert reply.status == 200, reply.raw[:300]


def test_echoed_values_are_cut_to_256_characters(gateway: Gateway) -> None:
    huge = "m" * 500_000
    body = json.dumps({"model": huge, "messages": [{"role": "user", "content": "hi"}]}).encode()
    reply = exchange(gateway.port, post(b"/v1/chat/completions", body))
    message = assert_json_error(reply, 404, "openai")
    assert len(message) < 400 and "mmmm" in message
    reply = exchange(gateway.port, post(b"/v1/" + b"p" * 3000, CHAT))
    message = assert_json_error(reply, 404, "openai")
    assert len(message) < 400


def test_any_content_type_is_read_as_json(gateway: Gateway) -> None:
    """``curl -d`` sends form-encoded; the JSON body is still served."""
    for kind in (b"application/x-www-form-urlencoded", b"text/plain", b"image/png"):
        reply = exchange(gateway.port, post(b"/v1/chat/completions", CHAT,
                                            b"Content-Type: " + kind))
        assert reply.status == 200, reply.raw[:300]
