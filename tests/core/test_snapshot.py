"""The console's live view from the state store: states (drained, cooling with time left,
half-open, unreachable, healthy), in-flight vs cap, and load signals when the store has them."""

from __future__ import annotations

from collections.abc import Sequence

from llm_router_api.base.lb.balanced import LoadBalancedStrategy
from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.base.lb.state import MemoryStore, SignalAges
from llm_router_api.core.background import UNREACHABLE_KEY
from llm_router_api.core.snapshot import ConfigView, build_snapshot
from llm_router_api.schemas.config import ModelConfig, ModelsConfig, ProviderConfig

IDS = ("ok", "drained", "cooling", "unreachable")


class SignalStore(MemoryStore):
    def signals(self, provider_ids: Sequence[str]) -> SignalAges:
        return {"ok": ({"waiting": 2.0, "kv_cache": 0.5}, 0.4)}


def config() -> ModelsConfig:
    providers = tuple(ProviderConfig(id=i, api_host="http://127.0.0.1:1", api_type="vllm",
                                     max_concurrency=2) for i in IDS)
    return ModelsConfig(models={"m": ModelConfig(name="m", providers=providers)}, mtime=0.0)


def test_states_caps_and_signals() -> None:
    store = SignalStore()
    chooser = ProviderChooser(LoadBalancedStrategy(store), store=store)
    models = config()
    lease = chooser.acquire(models.models["m"], exclude=["drained", "cooling", "unreachable"])
    chooser.drain("drained")
    chooser.mark_failed(models.models["m"].providers[2], retry_after=30)
    store.set_hash(UNREACHABLE_KEY, {"unreachable": 1.0})
    snap = build_snapshot(chooser, models, ConfigView("abc", 1.0))
    rows = {p["id"]: p for p in snap["models"][0]["providers"]}
    assert {i: rows[i]["state"] for i in IDS} == {
        "ok": "healthy", "drained": "drained", "cooling": "cooling",
        "unreachable": "unreachable"}
    assert 25 < rows["cooling"]["cooldown_remaining"] <= 30
    assert rows["ok"]["in_flight"] == 1 and rows["ok"]["max_concurrency"] == 2
    assert rows["ok"]["load"] == {"waiting": 2.0, "kv_cache": 0.5, "age_s": 0.4}
    assert rows["drained"]["load"] is None and rows["ok"]["prefix_hit_ratio"] is None
    assert snap["config"]["sha256"] == "abc" and snap["models"][0]["healthy"] is True
    chooser.release(lease)
    store.clear_cool_down("cooling")  # the cool-down is over; the failure count is not
    rows = {p["id"]: p for p in build_snapshot(chooser, models, ConfigView("abc", 1.0)
                                               )["models"][0]["providers"]}
    assert rows["cooling"]["state"] == "half-open"
