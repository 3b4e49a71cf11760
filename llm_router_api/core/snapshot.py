"""The console's live view: one JSON-able picture of every model and provider, from shared state.

Everything comes from the state store (cool-downs, leases, drains, failures, reachability,
runtime weights, the rolling windows of ``core.stats``) and the configuration, so any worker of
any instance sharing the store draws the same picture. Cost: a fixed number of store calls per
snapshot (one per kind of state, plus one per stats bucket and, with runtime weights, one per
model), whatever the traffic.

Load signals (§11) come through ``signals``: a function from provider ids to
``{provider_id: {"load": {...}}}``; by default the state store's (``store.signals``: each
provider's last polled values and their age, as ``cache_aware``'s load poller writes them).
The prefix-hit ratio is the mean prefix match of the ``cache_aware`` decisions of the last
minute (``core.stats``). Absent means "not known" and the page says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_router_api.base.lb.chooser import COOL_UNTIL_KEY, ProviderChooser
from llm_router_api.base.lb.state import StateStore
from llm_router_api.core.background import UNREACHABLE_KEY
from llm_router_api.core.stats import ProviderWindow, quantile, read_window
from llm_router_api.schemas.config import ModelsConfig, ProviderConfig

Signals = Callable[[Sequence[str]], dict[str, dict[str, Any]]]


def no_signals(provider_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {}


def store_signals(store: StateStore) -> Signals:
    """The load signals the state store keeps (polled for ``cache_aware``), with their age."""
    def signals(provider_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {provider_id: {"load": {**values, "age_s": round(age, 1)}}
                for provider_id, (values, age) in store.signals(provider_ids).items()}

    return signals


@dataclass
class ConfigView:
    """What the page says about the configuration."""

    sha256: str
    loaded_at: float
    #: Whether this gateway can reload its configuration (the page hides the button if not).
    can_reload: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def build_snapshot(chooser: ProviderChooser, models: ModelsConfig, config: ConfigView,
                   signals: Signals | None = None, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    store = chooser.store
    signals = signals or store_signals(store)
    ids = list(dict.fromkeys(p.id for _, p in models.providers()))
    cooling = store.cooling(ids)
    in_flight = store.in_flight(ids)
    drained = chooser.drained()
    unreachable = store.get_hash(UNREACHABLE_KEY)
    cool_until = store.get_hash(COOL_UNTIL_KEY)
    failing = {pid for pid, (failures, _) in store.health_marks(ids).items() if failures > 0}
    windows, covered = read_window(store, ids, now)
    known = signals(ids)
    strategy = chooser.strategy
    out_models = []
    for model in models.models.values():
        weights = (strategy.runtime_weights(model.name, model.providers)
                   if strategy.supports_runtime_weights else {})
        providers = []
        for p in model.providers:
            state = _state(p.id, cooling, drained, unreachable, failing)
            remaining = max(0.0, cool_until.get(p.id, now) - now) if p.id in cooling else None
            providers.append({
                "id": p.id, "api_type": p.api_type, "state": state,
                "cooldown_remaining": None if remaining is None else round(remaining, 1),
                "drained": p.id in drained, "in_flight": in_flight.get(p.id, 0),
                "max_concurrency": strategy.cap(p),
                **_rates(windows.get(p.id), covered),
                **_weights(p, weights.get(p.id)),
                "load": known.get(p.id, {}).get("load")})
        out_models.append({"name": model.name,
                           "healthy": any(pr["state"] in ("healthy", "half-open")
                                          for pr in providers),
                           "providers": providers})
    return {"time": now, "strategy": strategy.name,
            "runtime_weights": strategy.supports_runtime_weights,
            "config": {"sha256": config.sha256, "loaded_at": config.loaded_at,
                       "can_reload": config.can_reload, **config.extra},
            "models": out_models}


def _state(provider_id: str, cooling: set[str], drained: dict[str, float],
           unreachable: dict[str, float], failing: set[str]) -> str:
    if provider_id in drained:
        return "drained"
    if provider_id in cooling:
        return "cooling"
    if provider_id in failing:  # cool-down over: one live trial request at a time decides
        return "half-open"
    if provider_id in unreachable:
        return "unreachable"
    return "healthy"


def _rates(window: ProviderWindow | None, covered: float) -> dict[str, Any]:
    window = window or ProviderWindow()
    per_minute = 60.0 / max(covered, 1.0)
    return {"requests_per_min": round(window.requests * per_minute, 1),
            "errors_per_min": round(window.errors * per_minute, 1),
            "tokens_per_min": round((window.tokens_in + window.tokens_out) * per_minute, 1),
            "latency_p50": quantile(window.latency, 0.5),
            "latency_p95": quantile(window.latency, 0.95),
            "ttft_p50": quantile(window.ttft, 0.5), "ttft_p95": quantile(window.ttft, 0.95),
            "prefix_hit_ratio": window.prefix_hit_ratio}


def _weights(provider: ProviderConfig, runtime: dict[str, float | None] | None,
             ) -> dict[str, Any]:
    runtime = runtime or {}
    effective = runtime.get("effective_weight")
    return {"weight": provider.weight, "runtime_weight": runtime.get("runtime_weight"),
            "effective_weight": None if effective is None else round(effective, 3)}
