"""Access lines, request ids, debug detail and readiness.

A real 2-worker gunicorn gateway (threaded workers, JSON logs, a log file) in front of the
stand-in for what a running service prints; in-process apps for ``LLM_ROUTER_IN_DEBUG`` and
``/health`` states that need a provider cooled down on purpose.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from llm_router_api.settings import load_settings
from llm_router_api.web.app import create_app
from standin import StandIn
from tests.support.procs import Gateway, free_port, wait_for, write_config

TOKEN = "sk-logging-provider-token-4242"
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def config(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    down = f"http://127.0.0.1:{free_port()}"
    return write_config(tmp_path_factory.mktemp("logging"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai",
                "api_token": TOKEN}],
        "pair": [{"id": "pair-a", "api_host": upstream.url, "api_type": "openai",
                  "api_token": TOKEN},
                 {"id": "pair-b", "api_host": down, "api_type": "openai", "api_token": TOKEN}],
        "down": [{"id": "down-up", "api_host": down, "api_type": "openai", "api_token": TOKEN}],
    })


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("log-file") / "router.log"


@pytest.fixture(scope="module")
def gateway(config: Path, log_file: Path) -> Iterator[Gateway]:
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKERS_COUNT="2",
                     LLM_ROUTER_SERVER_THREADS_COUNT="4", LLM_ROUTER_LOG_JSON="1",
                     LLM_ROUTER_LOG_FILENAME=str(log_file), LLM_ROUTER_COOLDOWN="0",
                     LLM_ROUTER_EXTERNAL_TIMEOUT="5")
    yield server
    server.stop()
    assert TOKEN not in server.output()
    assert TOKEN not in log_file.read_text()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def access_line(gateway: Gateway, request_id: str) -> dict[str, Any]:
    def lines() -> list[dict[str, Any]]:
        return [e for e in json_lines(gateway.output())
                if e["logger"] == "llm_router.access" and e.get("request_id") == request_id]

    wait_for(lambda: len(lines()) > 0, 10, f"the access line of {request_id}")
    found = lines()
    assert len(found) == 1, found
    return found[0]


def chat(gateway: Gateway, model: str, request_id: str = "",
         stream: bool = False) -> requests.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    return requests.post(gateway.url + "/v1/chat/completions", timeout=10, headers=headers,
                         json={"model": model, "messages": MESSAGES, "stream": stream})


def test_request_id_is_accepted_forwarded_returned_and_logged(
        gateway: Gateway, fresh_upstream: StandIn) -> None:
    response = chat(gateway, "m1", "caller-id-42")
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "caller-id-42"
    assert fresh_upstream.requests[-1]["headers"]["x-request-id"] == "caller-id-42"
    line = access_line(gateway, "caller-id-42")
    assert line == {**line, "method": "POST", "route": "/v1/chat/completions", "model": "m1",
                    "provider": "m1-up", "status": 200, "stream": False,
                    "bytes": len(response.content), "level": "INFO"}


def test_request_id_is_generated_when_absent_or_unusable(
        gateway: Gateway, fresh_upstream: StandIn) -> None:
    response = chat(gateway, "m1")
    generated = response.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert fresh_upstream.requests[-1]["headers"]["x-request-id"] == generated
    assert access_line(gateway, generated)["status"] == 200
    odd = requests.get(gateway.url + "/api/ping", headers={"X-Request-ID": "bad\tid"}, timeout=5)
    assert odd.headers["X-Request-ID"] != "bad\tid" and len(odd.headers["X-Request-ID"]) == 32


def test_stream_access_line_is_written_when_the_stream_ends(
        gateway: Gateway, fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(tokens=5, token_delay=0.15)  # ≥ 0.75 s between first and last
    response = chat(gateway, "m1", "stream-1", stream=True)
    assert response.text.endswith("data: [DONE]\n\n")
    line = access_line(gateway, "stream-1")
    assert line["stream"] is True and line["status"] == 200
    assert line["bytes"] == len(response.content)
    assert line["duration_ms"] >= 750


def test_log_lines_inside_a_request_carry_its_id_and_go_to_the_file(
        gateway: Gateway, log_file: Path) -> None:
    response = chat(gateway, "down", "failing-1")
    assert response.status_code == 502
    assert TOKEN not in response.text
    line = access_line(gateway, "failing-1")
    assert line["status"] == 502 and line["route"] == "/v1/chat/completions"
    warnings = [e for e in json_lines(gateway.output())
                if e["level"] == "WARNING" and e.get("request_id") == "failing-1"]
    assert warnings and "down-up" in warnings[0]["message"]
    in_file = [e for e in json_lines(log_file.read_text()) if e.get("request_id") == "failing-1"]
    assert {e["logger"] for e in in_file} >= {"llm_router.access", "llm_router.handler"}
    assert not any(e["level"] == "DEBUG" for e in json_lines(log_file.read_text()))


def test_metrics_are_not_served_unless_enabled(gateway: Gateway) -> None:
    assert requests.get(gateway.url + "/api/metrics", timeout=5).status_code == 404
    assert requests.get(gateway.url + "/metrics", timeout=5).status_code == 404


def test_health_reports_unreachable_providers_and_no_hosts(gateway: Gateway,
                                                          upstream: StandIn) -> None:
    # pair-b points at nothing: the startup probe reports it (cool-down 0: the failures above
    # took nobody out of routing); pair-a still serves "pair", but "down" has no provider.
    def probed() -> bool:
        body = requests.get(gateway.url + "/api/health", timeout=5).json()
        return body["models"]["pair"]["providers"][1]["reachable"] is False
    wait_for(probed, 30, "the startup probe")
    response = requests.get(gateway.url + "/api/health", timeout=5)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["models"]["pair"] == {"healthy": True, "providers": [
        {"id": "pair-a", "healthy": True, "reachable": True, "drained": False, "in_flight": 0},
        {"id": "pair-b", "healthy": False, "reachable": False, "drained": False, "in_flight": 0}]}
    assert body["models"]["down"]["healthy"] is False
    assert upstream.url not in response.text and TOKEN not in response.text
    assert "127.0.0.1" not in response.text


# -- in-process apps --------------------------------------------------------------------------
@pytest.fixture()
def make_app(config: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(**env: str) -> Flask:
        settings = load_settings({"LLM_ROUTER_MODELS_CONFIG": str(config),
                                  "LLM_ROUTER_MINIMUM": "1", **env})
        app = create_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["llm_router"].close()


def test_health_is_503_when_a_model_has_no_healthy_provider(make_app: Any) -> None:
    app = make_app(LLM_ROUTER_COOLDOWN="60")
    client = app.test_client()
    chooser = app.extensions["llm_router"].handler.chooser
    models = app.extensions["llm_router"].models.models

    def providers(model: str) -> list[dict[str, Any]]:
        return list(client.get("/api/health").get_json()["models"][model]["providers"])

    # The startup probe finds "down" (and pair-b) pointing at nothing.
    wait_for(lambda: providers("down")[0]["reachable"] is False, 30, "the startup probe")
    degraded = client.get("/api/health")
    assert degraded.status_code == 503
    body = degraded.get_json()
    assert body["status"] == "degraded"
    assert body["models"]["down"]["healthy"] is False
    assert body["models"]["pair"]["healthy"] is True  # pair-a still serves "pair"
    assert body["models"]["m1"]["healthy"] is True
    # A cool-down takes a reachable provider out too.
    chooser.mark_failed(models["m1"].providers[0])
    cooled = client.get("/api/health").get_json()["models"]["m1"]
    assert cooled["healthy"] is False
    assert [(p["id"], p["healthy"], p["reachable"], p["in_flight"])
            for p in cooled["providers"]] == [("m1-up", False, True, 0)]


def test_in_debug_means_debug_logs_and_detail_in_error_bodies(make_app: Any) -> None:
    bad = {"model": "m1", "messages": [{"content": "no role"}]}
    quiet = make_app().test_client().post("/v1/chat/completions", json=bad)
    assert "detail" not in quiet.get_json()["error"]
    app = make_app(LLM_ROUTER_IN_DEBUG="1")
    assert logging.getLogger("llm_router").level == logging.DEBUG
    assert not app.debug  # never Flask's debugger
    loud = app.test_client().post("/v1/chat/completions", json=bad)
    assert loud.status_code == 400
    assert loud.get_json()["error"]["detail"][0]["loc"] == ["messages", 0, "role"]
    assert TOKEN not in loud.get_data(as_text=True)
