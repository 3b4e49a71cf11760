"""Prometheus metrics from a real 3-worker gunicorn gateway, compared exactly with what was sent.

One known mix of requests (ok, errors, streams, failover, unknown paths) runs once for the
module, between two scrapes of ``/api/metrics``; each test checks one family of series against
the difference. Sync workers serve one request at a time, so three overlapping streams must be
answered by three different workers: the scrape shows their sum, each series once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from standin import StandIn
from standin.behaviour import Behaviour
from tests.support.procs import ROOT, Gateway, free_port, wait_for, write_config

TOKEN = "sk-metrics-provider-token-9876"
STRATEGY = "tests.api.order_strategy:ConfigOrder"
UNKNOWN_MODEL = "not-configured-xyz"
MESSAGES = [{"role": "user", "content": "count my tokens please"}]

Key = tuple[str, tuple[tuple[str, str], ...]]


def scrape(gateway: Gateway, path: str = "/api/metrics") -> dict[Key, float]:
    response = requests.get(gateway.url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicated series {key}"
            samples[key] = sample.value
    return samples


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


@dataclass
class Mix:
    """What the mix sent and what the callers saw."""

    before: dict[Key, float]
    after: dict[Key, float]
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    tokens: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    upstream_requests: int = 0
    scrapes: int = 1  # of /api/metrics, not counting the one that gave ``after``
    logged: dict[str, dict[str, Any]] = field(default_factory=dict)  # request id -> line
    expected_lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics_text: str = ""

    def delta(self, name: str) -> dict[Key, float]:
        keys = {k for k in (*self.before, *self.after) if k[0] == name}
        return {k: self.after.get(k, 0.0) - self.before.get(k, 0.0) for k in keys
                if self.after.get(k, 0.0) != self.before.get(k, 0.0)}


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("metrics")
    down = f"http://127.0.0.1:{free_port()}"
    config = write_config(directory, {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai",
                "api_token": TOKEN}],
        "fo": [{"id": "fo-down", "api_host": down, "api_type": "openai", "api_token": TOKEN},
               {"id": "fo-up", "api_host": upstream.url, "api_type": "openai"}],
        "dead": [{"id": "dead-a", "api_host": down, "api_type": "openai"},
                 {"id": "dead-b", "api_host": down, "api_type": "openai"}],
    })
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKERS_COUNT="3",
                     LLM_ROUTER_SERVER_THREADS_COUNT="1", LLM_ROUTER_USE_PROMETHEUS="1",
                     LLM_ROUTER_LOG_JSON="1", LLM_ROUTER_COOLDOWN="0",
                     LLM_ROUTER_EXTERNAL_TIMEOUT="5", LLM_ROUTER_BALANCE_STRATEGY=STRATEGY)
    yield server
    directories = metrics_directories(server)
    server.stop()
    assert TOKEN not in server.output()
    # The launcher created a fresh directory for this instance, and removed it at exit.
    assert len(directories) == 1 and not any(d.exists() for d in directories)


def metrics_directories(gateway: Gateway) -> set[Path]:
    """Where the workers keep their metric files (they map them into memory)."""
    pids = {json.loads(raw)["pid"] for raw in gateway.output().splitlines()
            if raw.startswith("{")}
    found: set[Path] = set()
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps")
        if maps.exists():
            found |= {Path(line.split()[-1]).parent for line in maps.read_text().splitlines()
                      if line.endswith(".db")}
    return found


class Sender:
    def __init__(self, gateway: Gateway, mix: Mix) -> None:
        self.gateway = gateway
        self.mix = mix
        self._lock = threading.Lock()
        self._seq = 0

    def send(self, method: str, path: str, route: str, *, body: Any = None, raw: str = "",
             model: str = "", provider: str = "") -> requests.Response:
        with self._lock:
            self._seq += 1
            rid = f"mix-{self._seq}"
        kwargs: dict[str, Any] = {"headers": {"X-Request-ID": rid}, "timeout": 30}
        if body is not None:
            kwargs["json"] = body
        elif raw:
            kwargs["data"] = raw
            kwargs["headers"]["Content-Type"] = "application/json"
        response = requests.request(method, self.gateway.url + path, **kwargs)
        assert response.headers["X-Request-ID"] == rid
        stream = response.headers.get("Content-Type", "").startswith("text/event-stream")
        with self._lock:
            self.mix.requests[(route, method, str(response.status_code))] += 1
            self.mix.expected_lines[rid] = {
                "method": method, "route": route, "status": response.status_code,
                "model": model, "provider": provider, "stream": stream,
                "bytes": len(response.content)}
        return response

    def chat(self, model: str, provider: str = "", stream: bool = False, usage: bool = False,
             expect: int = 200) -> requests.Response:
        body: dict[str, Any] = {"model": model, "messages": MESSAGES, "stream": stream}
        if usage:
            body["stream_options"] = {"include_usage": True}
        response = self.send("POST", "/v1/chat/completions", "/v1/chat/completions",
                             body=body, model=model if expect == 200 else "",
                             provider=provider if expect == 200 else "")
        assert response.status_code == expect, response.text
        if expect == 200:
            self.count_tokens(model, provider, response, stream)
        return response

    def count_tokens(self, model: str, provider: str, response: requests.Response,
                     stream: bool) -> None:
        if not stream:
            usage = response.json()["usage"]
            self.add(model, provider, usage.get("prompt_tokens", 0),
                     usage.get("completion_tokens", 0))
            return
        chunks = [json.loads(line[6:]) for line in response.text.splitlines()
                  if line.startswith("data: {")]
        reported = [c["usage"] for c in chunks if c.get("usage")]
        if reported:
            self.add(model, provider, reported[-1]["prompt_tokens"],
                     reported[-1]["completion_tokens"])
        else:
            texts = [c for c in chunks if c.get("choices")
                     and c["choices"][0].get("delta", {}).get("content")]
            self.add(model, provider, 0, len(texts))

    def add(self, model: str, provider: str, tokens_in: int, tokens_out: int) -> None:
        with self._lock:
            self.mix.tokens[(model, provider, "in")] += tokens_in
            self.mix.tokens[(model, provider, "out")] += tokens_out


@pytest.fixture(scope="module")
def mix(gateway: Gateway, upstream: StandIn) -> Mix:
    upstream.reset()
    default = Behaviour().to_dict()  # without reset(), which clears the request count
    result = Mix(before=scrape(gateway), after={})
    sent_before = upstream.count
    send = Sender(gateway, result)

    for _ in range(3):
        send.chat("m1", "m1-up")
    send.chat("m1", "m1-up", stream=True, usage=True)
    send.chat("m1", "m1-up", stream=True)
    embedding = send.send("POST", "/v1/embeddings", "/v1/embeddings",
                          body={"model": "m1", "input": "four words of input"},
                          model="m1", provider="m1-up")
    assert embedding.status_code == 200
    send.add("m1", "m1-up", embedding.json()["usage"]["prompt_tokens"], 0)

    # Three overlapping streams: each sync worker takes one at a time.
    upstream.set_behaviour(first_delay=0.6, token_delay=0.05)
    threads = [threading.Thread(target=send.chat, args=("m1", "m1-up", True)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    upstream.set_behaviour(**default)

    for _ in range(2):
        send.chat(UNKNOWN_MODEL, expect=404)
    assert send.send("POST", "/v1/chat/completions", "/v1/chat/completions",
                     raw="{not json").status_code == 400
    for path in ("/wp-login.php", "/random/scanner/path"):
        assert send.send("GET", path, "<unmatched>").status_code == 404
    assert send.send("POST", "/v1/nothing-here", "<unmatched>", body={}).status_code == 404
    assert send.send("GET", "/v1/chat/completions", "<unmatched>").status_code == 405

    upstream.set_behaviour(mode="status", status_code=500)
    send.chat("m1", expect=502)
    upstream.set_behaviour(mode="status", status_code=400)
    send.chat("m1", expect=400)
    upstream.set_behaviour(mode="die_mid_stream", die_after=3)
    cut = send.chat("m1", "m1-up", stream=True)
    assert '"error"' in cut.text and cut.text.endswith("data: [DONE]\n\n")
    upstream.set_behaviour(**default)

    for _ in range(2):
        send.chat("fo", "fo-up")
    send.chat("dead", expect=502)

    result.upstream_requests = upstream.count - sent_before
    response = requests.get(gateway.url + "/metrics", timeout=10)  # Prometheus' default path
    result.metrics_text = response.text
    result.requests[("/metrics", "GET", "200")] += 1

    # A request is recorded when the server closes its response, just after the last byte;
    # scrapes race with the recording of the scrape before them, so they are checked apart.
    def settled() -> bool:
        result.after = scrape(gateway)
        done = (sent_by_mix(result.delta("llm_router_requests_total"))
                == sent_by_mix(expected_requests(result))
                and sent_by_mix(result.delta(DURATIONS))
                == sent_by_mix(expected_durations(result)))
        result.scrapes += 0 if done else 1
        return done

    try:
        wait_for(settled, 20, "every request to be recorded")
    except TimeoutError:  # show what differs
        assert sent_by_mix(result.delta("llm_router_requests_total")) == \
            sent_by_mix(expected_requests(result))
        assert sent_by_mix(result.delta(DURATIONS)) == \
            sent_by_mix(expected_durations(result))
        raise
    wait_for(lambda: len(access_lines(gateway.output())) == len(result.expected_lines), 10,
             "every access line")
    result.logged = access_lines(gateway.output())
    return result


def access_lines(output: str) -> dict[str, dict[str, Any]]:
    lines: dict[str, dict[str, Any]] = {}
    for raw in output.splitlines():
        if not raw.startswith("{"):
            continue  # gunicorn's own lines
        entry = json.loads(raw)
        if entry["logger"] == "llm_router.access" and entry["request_id"].startswith("mix-"):
            assert entry["request_id"] not in lines, f"two access lines: {entry}"
            lines[entry["request_id"]] = entry
    return lines


SCRAPES = key("llm_router_requests_total", route="/api/metrics", method="GET", status="200")


def expected_requests(mix: Mix) -> dict[Key, float]:
    return {key("llm_router_requests_total", route=r, method=m, status=s): float(n)
            for (r, m, s), n in mix.requests.items()}


DURATIONS = "llm_router_request_duration_seconds_count"


def expected_durations(mix: Mix) -> dict[Key, float]:
    durations: Counter[Key] = Counter()
    for (route, method, _), n in mix.requests.items():
        durations[key(DURATIONS, route=route, method=method)] += n
    return {k: float(v) for k, v in durations.items()}


#: Routes the mix does not own: its own scrapes (checked apart), and the readiness pings of
#: ``Gateway``, whose client gives up after 1 s and retries, so on a loaded machine a ping it
#: abandoned is answered (and recorded) after the ``before`` scrape.
NOT_THE_MIX = {("route", "/api/metrics"), ("route", "/api/ping")}


def sent_by_mix(series: dict[Key, float]) -> dict[Key, float]:
    return {k: v for k, v in series.items() if NOT_THE_MIX.isdisjoint(k[1])}


def test_requests_by_route_method_and_status(mix: Mix) -> None:
    delta = mix.delta("llm_router_requests_total")
    assert sent_by_mix(delta) == sent_by_mix(expected_requests(mix))
    assert sent_by_mix(mix.delta(DURATIONS)) == \
        sent_by_mix(expected_durations(mix))
    # Earlier scrapes are counted, or at most the one just before is still being closed
    # (its recording races with this scrape); this scrape is in flight.
    assert mix.scrapes - 1 <= delta.get(SCRAPES, 0.0) <= mix.scrapes
    assert mix.after[key("llm_router_requests_in_flight")] in (1.0, 2.0)


def test_unknown_model_and_paths_never_become_label_values(mix: Mix) -> None:
    assert UNKNOWN_MODEL not in mix.metrics_text
    assert "wp-login" not in mix.metrics_text and "scanner" not in mix.metrics_text
    models = {dict(labels).get("model") for _, labels in mix.after} - {None}
    assert models == {"m1", "fo", "dead"}


def test_provider_calls_errors_and_failovers(mix: Mix) -> None:
    calls = {"m1-up": 12, "fo-down": 2, "fo-up": 2, "dead-a": 1, "dead-b": 1}
    model_of = {"m1-up": "m1", "fo-down": "fo", "fo-up": "fo", "dead-a": "dead",
                "dead-b": "dead"}
    assert mix.delta("llm_router_provider_calls_total") == {
        key("llm_router_provider_calls_total", model=model_of[p], provider=p): float(n)
        for p, n in calls.items()}
    assert mix.delta("llm_router_strategy_selections_total") == {
        key("llm_router_strategy_selections_total", strategy="config_order",
            model=model_of[p], provider=p): float(n) for p, n in calls.items()}
    assert mix.upstream_requests == calls["m1-up"] + calls["fo-up"]
    errors = {("m1", "m1-up", "status"): 1, ("m1", "m1-up", "client"): 1,
              ("m1", "m1-up", "connection"): 1, ("fo", "fo-down", "connection"): 2,
              ("dead", "dead-a", "connection"): 1, ("dead", "dead-b", "connection"): 1}
    assert mix.delta("llm_router_provider_errors_total") == {
        key("llm_router_provider_errors_total", model=m, provider=p, kind=k): float(n)
        for (m, p, k), n in errors.items()}
    assert mix.delta("llm_router_failovers_total") == {
        key("llm_router_failovers_total", model="fo", provider="fo-up"): 2.0,
        key("llm_router_failovers_total", model="dead", provider="dead-b"): 1.0}


def test_latency_and_time_to_first_token_histograms(mix: Mix) -> None:
    # Delivered answers: 3 + 2 streams + 1 embedding + 3 overlapping + 1 cut stream; 2 failovers.
    assert mix.delta("llm_router_provider_latency_seconds_count") == {
        key("llm_router_provider_latency_seconds_count", model="m1", provider="m1-up"): 10.0,
        key("llm_router_provider_latency_seconds_count", model="fo", provider="fo-up"): 2.0}
    assert mix.delta("llm_router_provider_ttft_seconds_count") == {
        key("llm_router_provider_ttft_seconds_count", model="m1", provider="m1-up"): 6.0}
    # The overlapping streams waited 0.6 s for their first token: the bound is visible.
    slow = (mix.after[key("llm_router_provider_ttft_seconds_count", model="m1",
                          provider="m1-up")]
            - mix.after[key("llm_router_provider_ttft_seconds_bucket", model="m1",
                            provider="m1-up", le="0.25")])
    assert slow >= 3


def test_tokens_in_and_out_match_what_callers_received(mix: Mix) -> None:
    expected = {key("llm_router_tokens_total", model=m, provider=p, direction=d): float(n)
                for (m, p, d), n in mix.tokens.items() if n}
    assert mix.delta("llm_router_tokens_total") == expected
    assert expected[key("llm_router_tokens_total", model="m1", provider="m1-up",
                        direction="out")] > 0


def test_provider_health_gauge_and_token_absent(mix: Mix) -> None:
    for provider, model in (("m1-up", "m1"), ("fo-up", "fo"), ("dead-a", "dead")):
        assert mix.after[key("llm_router_provider_healthy", model=model,
                             provider=provider)] == 1.0  # cool-down 0: never taken out
    assert TOKEN not in mix.metrics_text


def test_one_access_line_per_request_written_when_the_body_ended(mix: Mix) -> None:
    assert set(mix.logged) == set(mix.expected_lines)
    for rid, expected in mix.expected_lines.items():
        line = mix.logged[rid]
        assert {k: line[k] for k in expected} == expected, rid
        assert line["duration_ms"] >= 0 and line["level"] == "INFO"
    # The overlapping streams were answered by different workers.
    slow = [line for line in mix.logged.values() if line["duration_ms"] >= 600
            and line["stream"]]
    assert len({line["pid"] for line in slow}) == 3


def test_alert_rules_and_docs_name_only_series_that_exist(tmp_path: Path) -> None:
    import re

    import yaml

    from llm_router_api.base.lb.state import MemoryStore
    from llm_router_api.core.config import load_models_config
    from llm_router_api.core.metrics import PrometheusMetrics

    config = write_config(tmp_path, {"m": [{"id": "p", "api_host": "http://127.0.0.1:9",
                                            "api_type": "openai"}]})
    metrics = PrometheusMetrics(load_models_config(str(config), {}), MemoryStore())
    families = {f.name for f in text_string_to_metric_families(metrics.render()[0].decode())}

    def same(name: str, family: str) -> bool:
        return name in [family] + [family + s for s in ("_total", "_bucket", "_count", "_sum")]

    def exists(name: str) -> bool:
        return any(same(name, f) for f in families)

    rules = yaml.safe_load((ROOT / "resources/prometheus/alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    used = set(re.findall(r"llm_router_\w+", exprs))
    assert used and all(exists(name) for name in used), used
    scrape = yaml.safe_load((ROOT / "resources/prometheus/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["metrics_path"] == "/api/metrics"
    section = (ROOT / "docs" / "observability.md").read_text()
    documented = set(re.findall(r"llm_router_\w+", section))
    assert {d for d in documented if not exists(d)} == set()
    undocumented = {f for f in families if not any(same(d, f) for d in documented)}
    assert {f for f in undocumented if not f.endswith("_created")} == set()


def test_an_operator_directory_is_emptied_at_start_and_kept(upstream: StandIn,
                                                            tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    stale = directory / "counter_999999.db"
    stale.write_bytes(b"left over from an earlier run")
    config = write_config(tmp_path, {"m1": [{"id": "m1-up", "api_host": upstream.url,
                                             "api_type": "openai"}]})
    server = Gateway(config, LLM_ROUTER_USE_PROMETHEUS="1",
                     PROMETHEUS_MULTIPROC_DIR=str(directory))
    try:
        assert not stale.exists()
        body = {"model": "m1", "messages": MESSAGES}
        assert requests.post(server.url + "/v1/chat/completions", json=body,
                             timeout=10).status_code == 200
        wait_for(lambda: scrape(server).get(key(
            "llm_router_requests_total", route="/v1/chat/completions", method="POST",
            status="200")) == 1.0, 10, "the request to be counted")
        assert list(directory.glob("*.db"))
    finally:
        server.stop()
    assert directory.is_dir()  # not ours to remove


def test_a_killed_worker_leaves_its_counts_and_drops_its_in_flight_requests(
        gateway: Gateway, upstream: StandIn, mix: Mix) -> None:
    before = scrape(gateway)
    upstream.set_behaviour(first_delay=3.0)
    body = {"model": "m1", "messages": MESSAGES, "stream": True}

    def stuck() -> None:
        with contextlib.suppress(requests.RequestException):
            requests.post(gateway.url + "/v1/chat/completions", json=body, timeout=10)

    thread = threading.Thread(target=stuck)
    sent = upstream.count
    thread.start()
    wait_for(lambda: upstream.count > sent, 10, "the stream to be in flight")
    assert scrape(gateway)[key("llm_router_requests_in_flight")] >= 2.0
    workers = Path(f"/proc/{gateway.proc.pid}/task/{gateway.proc.pid}/children").read_text()
    for pid in workers.split():
        os.kill(int(pid), signal.SIGKILL)
    thread.join()
    upstream.set_behaviour(**Behaviour().to_dict())
    wait_for(lambda: scrape(gateway)[key("llm_router_requests_in_flight")] == 1.0, 15,
             "the dead worker's in-flight request to be dropped")
    after = scrape(gateway)
    name = "llm_router_requests_total"
    assert {k: v for k, v in after.items() if k[0] == name and "/api/metrics" not in str(k)} \
        == {k: v for k, v in before.items() if k[0] == name and "/api/metrics" not in str(k)}
