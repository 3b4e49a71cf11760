"""Every server type starts for real and answers a chat request, non-stream and stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, Process, free_port, wait_for, write_config
from tests.support.rawhttp import exchange

SERVERS = [
    ("flask", {}),
    ("waitress", {}),
    ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gthread",
                  "LLM_ROUTER_SERVER_WORKERS_COUNT": "2"}),
    ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gevent",
                  "LLM_ROUTER_SERVER_WORKERS_COUNT": "2"}),
]


@pytest.fixture(scope="module")
def config(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("servers"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})


@pytest.mark.parametrize("server_type,env", SERVERS,
                         ids=["flask", "waitress", "gunicorn-gthread", "gunicorn-gevent"])
def test_server_answers_chat(server_type: str, env: dict[str, str], config: Path,
                             fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(token_delay=0.01)
    gateway = Gateway(config, server_type=server_type, LLM_ROUTER_MAX_REQUEST_BODY_SIZE="65536",
                      **env)
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        reply = client.chat.completions.create(model="m1", messages=messages)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
        stream = client.chat.completions.create(model="m1", messages=messages,  # type: ignore[arg-type]
                                                stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream)
        assert text == reply.choices[0].message.content
        assert_streamed_not_buffered(gateway, fresh_upstream)
        error = requests.post(gateway.url + "/v1/chat/completions", data=b"{", timeout=5)
        assert error.status_code == 400 and "error" in error.json()
        assert_oversize_bodies_are_413(gateway)
        if server_type != "flask":  # development only (docs/running.md): waits for the bytes
            assert_a_declared_oversize_chunk_is_413_at_once(gateway, server_type)
    finally:
        assert gateway.stop() in (0, -15)
    assert "Traceback" not in gateway.output()


def assert_streamed_not_buffered(gateway: Gateway, upstream: StandIn) -> None:
    """Each chunk reaches the caller as the upstream sends it: with 0.2 s between upstream
    frames (>= 1.4 s in all), the first frame arrives long before the last one."""
    upstream.set_behaviour(token_delay=0.2)
    started = time.monotonic()
    response = requests.post(gateway.url + "/v1/chat/completions", stream=True, timeout=10,
                             json={"model": "m1", "stream": True,
                                   "messages": [{"role": "user", "content": "hi"}]})
    arrivals = [time.monotonic() - started for line in response.iter_lines() if line]
    assert arrivals[-1] >= 1.4
    assert arrivals[-1] - arrivals[0] >= 1.0


def assert_oversize_bodies_are_413(gateway: Gateway) -> None:
    """With a Content-Length, and chunked (no length: refused once it passes the limit, never
    cut short and parsed)."""
    body = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "x" * 70000}]})
    url = gateway.url + "/v1/chat/completions"
    sized = requests.post(url, data=body.encode(), timeout=10,
                          headers={"Content-Type": "application/json"})
    chunked = requests.post(url, data=iter([body[:40000].encode(), body[40000:].encode()]),
                            headers={"Content-Type": "application/json"}, timeout=10)
    for response in (sized, chunked):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"


def assert_a_declared_oversize_chunk_is_413_at_once(gateway: Gateway, server_type: str) -> None:
    """A chunk whose size line declares more than the limit is refused when that line is read,
    not after the client timeout (30 s here; this client waits 10) spent waiting for its bytes.
    (gunicorn's refusal is the gateway's, in the caller's shape; waitress's its own, in JSON.)"""
    said = "over the limit of 65536 bytes" if server_type == "gunicorn" else "max_body of 65536"
    for size in (b"ffffffffffffffffffff", b"10001"):  # 2**80 - 1, then the limit + 1
        raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n{\"mo")
        reply = exchange(gateway.port, raw, timeout=10)
        assert reply.status == 413, reply.body
        assert said in json.loads(reply.body)["error"]["message"]
    if server_type != "gunicorn":
        return  # waitress reads the whole body before any route answers
    # A path that answers without reading the body, on a kept-alive connection: gunicorn reads
    # the body to reach the next request, meets the same refusal, and closes (a warning line;
    # the caller of this test checks that no traceback was logged).
    raw = (b"POST /v1/nothing-here HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"ffffffffffffffffffff\r\n{\"mo")
    assert exchange(gateway.port, raw, timeout=10).status == 404
    wait_for(lambda: "a chunk of 1208925819614629174706175 bytes" in gateway.output(), 10,
             "the refusal to be logged")


def test_run_rest_api_script_starts_gunicorn_with_the_shipped_config(
        fresh_upstream: StandIn) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER_")}
    env.update({"LLM_ROUTER_SERVER_PORT": str(port), "LLM_ROUTER_SERVER_HOST": "127.0.0.1",
                "LLM_ROUTER_MINIMUM": "1"})
    script = Process([str(ROOT / "run-rest-api.sh")], env, "run-rest-api")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url + "/api/ping"), 60, "run-rest-api.sh to serve")
        models = requests.get(url + "/v1/models", timeout=5).json()
        assert "qwen2.5-7b-instruct" in {m["id"] for m in models["data"]}
        assert "gunicorn" in script.output().lower()
    finally:
        script.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_bad_setting_stops_startup_with_one_line(config: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER_")}
    env.update({"LLM_ROUTER_MODELS_CONFIG": str(config), "LLM_ROUTER_SERVER_PORT": "eighty"})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "llm_router_api.rest_api"], env=env,
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "llm-router: cannot start: LLM_ROUTER_SERVER_PORT='eighty': expected a port number"]
    assert time.monotonic() - started < 30
