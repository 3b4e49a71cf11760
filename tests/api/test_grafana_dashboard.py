"""The Grafana dashboard (resources/grafana/llm-router.json): importable, its data source a
variable, and every metric its queries name is one a real gateway exports — checked against a
live scrape of a production-mode gateway (gunicorn, 2 gevent workers) after some traffic."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, free_port, write_config

DASHBOARD = ROOT / "resources/grafana/llm-router.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# Words of PromQL that are not metric names.
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                      "and", "or", "unless", "offset", "inf", "nan"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations ($__rate_interval)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word, rest = match.group(), expr[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue  # a function or an operator
        if expr[max(0, match.start() - 1)] in "$.0123456789":
            continue  # a variable or part of a number
        names.add(word)
    return names


def template_metrics(variable: dict[str, Any]) -> set[str]:
    query = variable.get("query")
    text = query.get("query", "") if isinstance(query, dict) else str(query or "")
    found = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
    return metric_names(found.group(1)) if found else set()


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_it_is_an_importable_dashboard_with_the_data_source_as_a_variable() -> None:
    dashboard = load()
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE and panel["targets"], panel["title"]
        assert all(t["datasource"] == DATASOURCE and t["expr"] for t in panel["targets"])
    for name in ("model", "provider"):
        assert variables[name]["datasource"] == DATASOURCE
    assert "${DS_PROMETHEUS}" not in json.dumps(dashboard["templating"]["list"][0])


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, model) (rate(llm_router_provider_ttft_seconds_'
            'bucket{model=~"$model", x="a{b}"}[$__rate_interval]))) / on (model) '
            'sum(up) or vector(0)')
    assert metric_names(expr) == {"llm_router_provider_ttft_seconds_bucket", "up"}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Every sample name of a real scrape after ordinary and stream calls and a fallback."""
    with StandIn(name="dash") as upstream:
        config = tmp_path_factory.mktemp("dashboard") / "models-config.json"
        write_config(config.parent, {
            "m": [{"id": "dash-p", "api_host": upstream.url, "api_type": "openai"}],
            "down": [{"id": "down-p", "api_host": f"http://127.0.0.1:{free_port()}",
                      "api_type": "openai"}]})
        raw = json.loads(config.read_text())
        raw["test_models"]["down"]["fallback_models"] = ["m"]
        config.write_text(json.dumps(raw))
        gateway = Gateway(config, server_type="gunicorn", LLM_ROUTER_USE_PROMETHEUS="1",
                          LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                          LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_SHUTDOWN_GRACE="2")
        try:
            for model, stream in (("m", False), ("m", True), ("down", False)):
                reply = requests.post(gateway.url + "/v1/chat/completions", timeout=20, json={
                    "model": model, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]})
                assert reply.status_code == 200, reply.text
            text = requests.get(gateway.url + "/metrics", timeout=10).text
        finally:
            gateway.stop()
    from prometheus_client.parser import text_string_to_metric_families

    yield {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_query_names_a_metric_the_gateway_exports(scraped: set[str]) -> None:
    dashboard = load()
    used = set().union(*(metric_names(q) for q in queries(dashboard)),
                       *(template_metrics(v) for v in dashboard["templating"]["list"]))
    missing = used - scraped
    assert missing == set(), f"queries name metrics the gateway does not export: {missing}"


def test_it_covers_what_operators_watch() -> None:
    used = set().union(*(metric_names(q) for q in queries(load())))
    families = {name.removesuffix(s) for name in used for s in HISTOGRAM_SUFFIXES
                if name.endswith(s)} | used
    for wanted in ("llm_router_requests_total", "llm_router_request_duration_seconds",
                   "llm_router_provider_latency_seconds", "llm_router_provider_ttft_seconds",
                   "llm_router_provider_healthy", "llm_router_provider_errors_total",
                   "llm_router_requests_in_flight", "llm_router_provider_leases",
                   "llm_router_failovers_total", "llm_router_model_fallbacks_total",
                   "llm_router_tokens_total", "llm_router_config_reloads_total",
                   "llm_router_config_info"):
        assert wanted in families, wanted
    assert any(q.startswith("histogram_quantile(") and "by (le, model, provider)" in q
               for q in queries(load()))
