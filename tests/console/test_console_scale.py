"""The console at 50 models x 10 providers: the snapshot's cost in store calls does not grow with
the pool (measured on a real Redis), and the page renders every update of 500 providers in a
real browser. The measured times are printed (and written to the artifacts), never asserted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.connection
from playwright.sync_api import Browser, expect

from llm_router_api.base.lb.balanced import LoadBalancedStrategy
from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.base.lb.state import StateStore
from llm_router_api.core.snapshot import ConfigView, build_snapshot
from llm_router_api.core.stats import WindowStats
from llm_router_api.core.usage import Usage
from llm_router_api.schemas.config import ModelConfig, ModelsConfig, ProviderConfig
from standin import StandIn
from tests.console.test_console_browser import ADMIN
from tests.lb.conftest import redis_store
from tests.support.procs import Gateway, RedisServer, running_standins, wait_for, write_config

MODELS, PER_MODEL = 50, 10


def pool(api_host: str) -> dict[str, list[dict[str, object]]]:
    return {f"model-{m:02d}": [{"id": f"m{m:02d}-p{p}", "api_host": api_host,
                                "api_type": "openai", "max_concurrency": 4}
                               for p in range(PER_MODEL)] for m in range(MODELS)}


def models_config(n_models: int) -> ModelsConfig:
    models = {name: ModelConfig(name=name, providers=tuple(
        ProviderConfig(id=str(p["id"]), api_host="http://127.0.0.1:1", api_type="openai",
                       max_concurrency=4) for p in providers))
              for name, providers in list(pool("x").items())[:n_models]}
    return ModelsConfig(models=models, mtime=0.0)


class CountingCalls:
    """Counts the round trips a Redis client makes: every command, pipeline and script
    (redis-py's client and our ``LeanScript`` alike) goes on the wire in one
    ``send_packed_command`` on a connection of the client's pool."""

    def __init__(self, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        pool = client.connection_pool
        inner = redis.connection.AbstractConnection.send_packed_command

        def counted(conn: Any, *args: Any, **options: Any) -> Any:
            if conn in pool._in_use_connections:  # type: ignore[attr-defined]
                self.calls += 1
            return inner(conn, *args, **options)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


def snapshot_cost(store: StateStore, n_models: int,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[int, float, int]:
    """Redis round trips and seconds one snapshot takes, with traffic recorded."""
    config = models_config(n_models)
    chooser = ProviderChooser(LoadBalancedStrategy(store), store=store)
    stats = WindowStats(store)
    for model in config.models.values():
        for provider in model.providers:
            lease = chooser.acquire(model, exclude=[p.id for p in model.providers
                                                    if p.id != provider.id])
            stats.attempt_started(lease, "balanced", False)
            stats.first_token(lease, 0.2)
            stats.finished(lease, Usage(10, 20))
            chooser.release(lease)
    stats.flush()
    chooser.drain(next(iter(config.models.values())).providers[0].id)
    build_snapshot(chooser, config, ConfigView("x", 0.0))  # Redis has loaded every script
    counter = CountingCalls(store._redis, monkeypatch)  # type: ignore[attr-defined]
    started = time.perf_counter()
    snap = build_snapshot(chooser, config, ConfigView("x", 0.0))
    seconds = time.perf_counter() - started
    used = counter.calls
    providers = sum(len(m["providers"]) for m in snap["models"])
    assert providers == n_models * PER_MODEL
    assert all(p["requests_per_min"] > 0 for m in snap["models"] for p in m["providers"])
    return used, seconds, providers


def test_the_snapshot_costs_the_same_redis_round_trips_for_10_or_500_providers(
        redis_server: RedisServer, artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_store = redis_store(redis_server, f"scale-{uuid.uuid4().hex[:6]}:")
    large_store = redis_store(redis_server, f"scale-{uuid.uuid4().hex[:6]}:")
    try:
        small = snapshot_cost(small_store, 1, monkeypatch)
        large = snapshot_cost(large_store, MODELS, monkeypatch)
    finally:
        small_store.close()
        large_store.close()
    assert small[0] == large[0], (small, large)  # one call per kind of state, not per provider
    line = (f"server-side snapshot, {large[2]} providers on Redis: {large[1] * 1000:.1f} ms, "
            f"{large[0]} Redis round trips (10 providers: {small[1] * 1000:.1f} ms, "
            f"{small[0]} round trips)")
    print("\n" + line)
    with (artifacts / "console-scale.txt").open("a") as out:
        out.write(line + "\n")


@pytest.fixture(scope="module")
def one_upstream() -> Iterator[StandIn]:
    with running_standins(1, "scale") as servers:
        yield servers[0]


def test_the_page_renders_500_providers_every_second(
        browser: Browser, one_upstream: StandIn, tmp_path: Path, artifacts: Path) -> None:
    config = write_config(tmp_path, pool(one_upstream.url))
    gateway = Gateway(config, server_type="flask", LLM_ROUTER_ADMIN_TOKEN=ADMIN)
    try:
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(f"{gateway.url}/api/ui/")
        page.fill("#token", ADMIN)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#models tbody tr")).to_have_count(MODELS * PER_MODEL,
                                                                timeout=30_000)
        samples: list[float] = []

        def sampled() -> bool:
            updates = int(page.evaluate("Number(document.body.dataset.updates || 0)"))
            if updates > len(samples) + 1:
                samples.append(float(page.evaluate("document.body.dataset.renderMs")))
            return len(samples) >= 5

        wait_for(sampled, 30, "five live updates of 500 providers")
        first = float(page.evaluate("document.body.dataset.renderFirstMs"))
        line = (f"browser, {MODELS * PER_MODEL} providers: first render {first:.1f} ms, "
                f"updates {min(samples):.1f}-{max(samples):.1f} ms (headless chromium)")
        print("\n" + line)
        with (artifacts / "console-scale.txt").open("a") as out:
            out.write(line + "\n")
        page.context.close()
    finally:
        gateway.stop()
