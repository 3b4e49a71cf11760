"""``weighted`` and ``dynamic_weighted``: deterministic weighted rotation, shared through the store.

``WeightedStrategy``: after any ``N`` picks since a state reset, with every provider healthy and
below its cap, each provider has been picked within one of ``N·w/Σw`` times (``picking``'s
``weighted`` rule; any positive weights). The rotation state is a hash in the store, so the
guarantee holds across all workers and instances sharing one Redis.

``DynamicWeightedStrategy``: the same rotation over effective weights
``w_eff = w × mean_ttft / ewma_ttft_i``: ``ewma_ttft_i`` is provider i's moving average
(α = ``ALPHA``) of time to first token for streams and of total time for non-stream calls, each
kind against its own mean over the candidates measured in that kind (a provider measured in both
takes the mean of both factors; one not measured yet keeps ``w``). ``w`` is the runtime weight
when one is set (``PUT P/admin/weights``), else the configured one. Runtime weights and averages
live in the store hash ``dynamic_weighted:stats:<model>`` until reset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llm_router_api.base.lb.strategy import RuleStrategy
from llm_router_api.schemas.config import ProviderConfig

ALPHA = 0.2
KINDS = {True: "ttft", False: "total"}  # stream -> time to first token; non-stream -> total
WEIGHT = "weight"


class WeightedStrategy(RuleStrategy):
    name = "weighted"
    rule = "weighted"


class DynamicWeightedStrategy(WeightedStrategy):
    name = "dynamic_weighted"
    supports_runtime_weights = True

    def stats_key(self, model: str) -> str:
        return f"{self.name}:stats:{model}"

    def observe_latency(self, model: str, provider: ProviderConfig, seconds: float,
                        stream: bool = False) -> None:
        self.store.ewma(self.stats_key(model), f"{KINDS[stream]}:{provider.id}",
                        max(seconds, 1e-6), ALPHA)

    def weights(self, model: str, providers: Sequence[ProviderConfig]) -> list[float]:
        return effective_weights(providers, self.store.get_hash(self.stats_key(model)))

    # -- runtime weights ---------------------------------------------------------------------
    def runtime_weights(self, model: str,
                        providers: Sequence[ProviderConfig]) -> dict[str, dict[str, float | None]]:
        stats = self.store.get_hash(self.stats_key(model))
        effective = effective_weights(providers, stats)
        return {p.id: {"weight": p.weight, "runtime_weight": stats.get(f"{WEIGHT}:{p.id}"),
                       "effective_weight": w,
                       **{f"ewma_{kind}": stats.get(f"{kind}:{p.id}") for kind in KINDS.values()}}
                for p, w in zip(providers, effective, strict=True)}

    def set_runtime_weights(self, model: str, weights: Mapping[str, float]) -> None:
        self.store.set_hash(self.stats_key(model),
                            {f"{WEIGHT}:{pid}": float(w) for pid, w in weights.items()})

    def reset_runtime_weights(self, model: str) -> None:
        stats = self.store.get_hash(self.stats_key(model))
        self.store.delete_hash(self.stats_key(model),
                               [k for k in stats if k.startswith(f"{WEIGHT}:")])


def effective_weights(providers: Sequence[ProviderConfig],
                      stats: Mapping[str, float]) -> list[float]:
    factors: list[list[float]] = [[] for _ in providers]
    for kind in KINDS.values():
        measured = {i: stats[f"{kind}:{p.id}"] for i, p in enumerate(providers)
                    if stats.get(f"{kind}:{p.id}", 0.0) > 0}
        if not measured:
            continue
        mean = sum(measured.values()) / len(measured)
        for i, ewma in measured.items():
            factors[i].append(mean / ewma)
    return [stats.get(f"{WEIGHT}:{p.id}", p.weight) * (sum(f) / len(f) if f else 1.0)
            for p, f in zip(providers, factors, strict=True)]
