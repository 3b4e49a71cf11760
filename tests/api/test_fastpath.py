"""``web.fastpath``: the model routes served without Flask answer exactly as Flask does.

Each request is sent twice to one app (in-process, a real stand-in upstream): through the app
as it serves (the model routes by ``ModelRoutes``) and through Flask's own dispatch alone
(``Flask.wsgi_app``, which still has every route). Status, headers and body must be the same;
Flask's ``request_started`` signal tells which path served.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask, request_started
from werkzeug.test import Client, TestResponse

from llm_router_api.settings import load_settings
from llm_router_api.web.app import create_app
from llm_router_api.web.clientio import ClientDeadline
from llm_router_api.web.fastpath import ModelRoutes
from standin import StandIn
from tests.support.procs import write_config

KEY = "team-key-123"
AUTH = {"Authorization": f"Bearer {KEY}", "X-Request-ID": "req-1"}
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
LISTED = "https://app.example.com"
DEEP = b'{"model": "m1", "messages": ' + b"[" * 200 + b"]" * 200 + b"}"
# (name, path, body bytes, extra headers)
CASES: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("chat", "/v1/chat/completions", orjson.dumps(CHAT), {}),
    ("chat-prefix", "/api/chat/completions", orjson.dumps(CHAT), {}),
    ("chat-stream", "/v1/chat/completions", orjson.dumps({**CHAT, "stream": True}), {}),
    ("completions", "/v1/completions", orjson.dumps({"model": "m1", "prompt": "hi"}), {}),
    ("ollama-chat", "/api/chat", orjson.dumps({**CHAT, "stream": False}), {}),
    ("ollama-stream", "/api/chat", orjson.dumps({**CHAT, "stream": True}), {}),
    ("ollama-generate", "/api/generate",
     orjson.dumps({"model": "m1", "prompt": "hi", "stream": False}), {}),
    ("messages", "/v1/messages", orjson.dumps({**CHAT, "max_tokens": 5}), {}),
    ("messages-stream", "/v1/messages",
     orjson.dumps({**CHAT, "max_tokens": 5, "stream": True}), {}),
    ("responses", "/v1/responses", orjson.dumps({"model": "m1", "input": "hi"}), {}),
    ("not-json", "/v1/chat/completions", b"{nope", {}),
    ("empty", "/api/chat", b"", {}),
    ("not-object", "/v1/messages", b"[1]", {}),
    ("too-deep", "/v1/chat/completions", DEEP, {}),
    ("invalid", "/v1/chat/completions", orjson.dumps({"model": "m1"}), {}),
    ("unknown-model", "/v1/chat/completions", orjson.dumps({**CHAT, "model": "zz"}), {}),
    ("not-allowed-model", "/api/chat", orjson.dumps({**CHAT, "model": "m2"}), {}),
    ("no-key", "/v1/messages", orjson.dumps(CHAT), {"Authorization": ""}),
    ("wrong-key", "/v1/chat/completions", orjson.dumps(CHAT),
     {"Authorization": "Bearer wrong-key-999"}),
    ("cross-site", "/v1/chat/completions", orjson.dumps(CHAT),
     {"Origin": "https://evil.example"}),
    ("listed-origin", "/api/chat", orjson.dumps({**CHAT, "stream": False}),
     {"Origin": LISTED}),
    ("over-limit", "/v1/chat/completions", b"{" + b" " * 5000 + b"}", {}),
    ("bad-request-id", "/v1/chat/completions", orjson.dumps(CHAT), {"X-Request-ID": "a\x01"}),
]
#: Differ between two answers of the same call (ids, times; a fresh request id when refused).
VOLATILE = ("id", "created", "created_at", "system_fingerprint", "total_duration",
            "eval_duration", "prompt_eval_duration", "load_duration")


@pytest.fixture(scope="module")
def app(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    root = tmp_path_factory.mktemp("fastpath")
    config: Path = write_config(root, {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}],
        "m2": [{"id": "m2-up", "api_host": upstream.url, "api_type": "openai"}],
        # failed on purpose (its provider cools down; m1's does not)
        "m3": [{"id": "m3-up", "api_host": upstream.url, "api_type": "openai"}]})
    keys = root / "keys.json"
    keys.write_text(json.dumps({"keys": [{"id": "team", "key": KEY, "models": ["m1", "m3"],
                                          "requests_per_minute": 1000}]}))
    settings = load_settings({"LLM_ROUTER_MODELS_CONFIG": str(config), "LLM_ROUTER_MINIMUM": "1",
                              "LLM_ROUTER_API_KEYS_FILE": str(keys),
                              "LLM_ROUTER_MAX_REQUEST_BODY_SIZE": "4096",
                              "LLM_ROUTER_CORS_ORIGINS": LISTED})
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["llm_router"].close()


def _call(wsgi: Any, path: str, body: bytes, extra: dict[str, str]) -> TestResponse:
    headers = {**AUTH, "Content-Type": "application/json", **extra}
    headers = {name: value for name, value in headers.items() if value}
    return Client(wsgi).post(path, data=body, headers=headers)


def _comparable(reply: TestResponse) -> tuple[int, dict[str, str], Any]:
    headers = {name: value for name, value in reply.headers.items()
               if name != "Date" and "remaining" not in name}  # one request later
    if headers.get("X-Request-ID") != "req-1":
        headers.pop("X-Request-ID")  # a fresh one each time
    data = reply.get_data()
    if "Content-Length" in headers:  # durations in the body may differ in length
        assert int(headers.pop("Content-Length")) == len(data)
    return reply.status_code, headers, _scrub(data)


def _scrub(data: bytes) -> Any:
    """The body without its volatile fields (every JSON line or SSE event parsed)."""
    try:
        return _drop(orjson.loads(data))
    except orjson.JSONDecodeError:
        lines = [line.removeprefix(b"data: ") for line in data.splitlines() if line.strip()]
        return [_drop(orjson.loads(line)) if line.startswith(b"{") else line for line in lines]


def _drop(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_drop(v) for v in value]
    return value


@pytest.mark.parametrize("name,path,body,extra", CASES, ids=[c[0] for c in CASES])
def test_fast_path_answers_as_flask_does(app: Flask, fresh_upstream: StandIn, name: str,
                                         path: str, body: bytes, extra: dict[str, str]) -> None:
    flask_only = ClientDeadline(lambda env, start: Flask.wsgi_app(app, env, start), 30.0)
    dispatched: list[str] = []

    def seen(sender: Flask, **_: Any) -> None:
        dispatched.append("flask")

    with request_started.connected_to(seen, app):
        fast = _call(app, path, body, extra)
        assert dispatched == []  # served without Flask
        slow = _call(flask_only, path, body, extra)
        assert dispatched == ["flask"]
    assert _comparable(fast) == _comparable(slow)
    assert fast.status_code < 500 and fast.headers["Vary"] == "Origin"


def test_other_methods_and_routes_stay_with_flask(app: Flask) -> None:
    dispatched: list[str] = []
    with request_started.connected_to(lambda sender, **_: dispatched.append("x"), app):
        assert Client(app).get("/v1/chat/completions").status_code == 405
        assert Client(app).options("/v1/chat/completions").status_code == 204
        assert Client(app).get("/v1/models", headers=AUTH).status_code == 200
    assert dispatched == ["x", "x", "x"]
    fast = [m for m in _layers(app) if isinstance(m, ModelRoutes)]
    assert fast and "/v1/chat/completions" in fast[0].routes and "/v1/models" not in fast[0].routes


def test_fast_path_logs_carry_the_request_id(app: Flask, fresh_upstream: StandIn,
                                             caplog: pytest.LogCaptureFixture) -> None:
    fresh_upstream.set_behaviour(mode="status", status_code=500)
    with caplog.at_level(logging.INFO, logger="llm_router"):
        _call(app, "/v1/chat/completions", orjson.dumps({**CHAT, "model": "m3"}), {})
    ids = {getattr(r, "request_id", None) for r in caplog.records if r.name != "llm_router.access"}
    assert ids == {"req-1"}


def _layers(app: Flask) -> Iterator[Any]:
    layer: Any = app.wsgi_app
    while layer is not None:
        yield layer
        layer = getattr(layer, "app", None)


def _in_flight(app: Flask) -> int:
    health = Client(app).get("/api/health", headers=AUTH).get_json()
    return sum(int(p.get("in_flight", 0)) for m in health["models"].values()
               for p in m["providers"])


def test_a_stream_the_server_never_takes_is_released(app: Flask, fresh_upstream: StandIn) -> None:
    def refusing(status: str, headers: list[tuple[str, str]]) -> None:
        raise ValueError("the server refused the head")

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/chat/completions",
               "CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": f"Bearer {KEY}",
               "wsgi.url_scheme": "http"}
    body = orjson.dumps({**CHAT, "stream": True})
    for _ in range(3):
        call = {**environ, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
        with pytest.raises(ValueError, match="refused the head"):
            app.wsgi_app(call, refusing)
    assert fresh_upstream.count == 3  # each stream was opened upstream
    assert _in_flight(app) == 0
