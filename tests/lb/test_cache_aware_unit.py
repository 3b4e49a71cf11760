"""``cache_aware`` as units: block hashing, the scoring rule, the prefix table's bound, and the
one-step decision on MemoryStore and on a real Redis (the two must agree)."""

from __future__ import annotations

import time
import uuid

import pytest

from llm_router_api.base.lb.cache_aware import CacheAwareStrategy
from llm_router_api.base.lb.cache_scoring import CacheParams, View, decide, load_of
from llm_router_api.base.lb.hint import (
    AFFINITY_BREAK,
    AFFINITY_HIT,
    RoutingHint,
    RoutingOutcome,
)
from llm_router_api.base.lb.prefix import PrefixTable, block_hashes
from llm_router_api.base.lb.state import StateStore
from llm_router_api.core.routing import RoutingHints, render_prompt
from llm_router_api.schemas.calls import Call, Op, Protocol
from llm_router_api.schemas.config import ProviderConfig

TTL = 30.0
PARAMS = CacheParams()


def providers(n: int, cap: int | None = None) -> list[ProviderConfig]:
    return [ProviderConfig(id=f"p{i}", api_host="http://127.0.0.1:1", api_type="vllm",
                           max_concurrency=cap) for i in range(n)]


# -- hashing -----------------------------------------------------------------------------------
def test_block_hashes_chain_and_cut_full_blocks_only() -> None:
    text = "a" * 256 * 3 + "tail"
    hashes = block_hashes(text, 256, "m")
    assert len(hashes) == 3
    assert len(set(hashes)) == 3  # equal blocks, different positions: the chain tells them apart
    assert block_hashes(text + "more", 256, "m")[:3] == hashes  # a longer prompt shares them
    assert block_hashes(text, 256, "m") == hashes  # stable
    assert block_hashes(text, 256, "other")[0] != hashes[0]  # the seed (model) counts
    changed = "b" + text[1:]
    assert not set(block_hashes(changed, 256, "m")) & set(hashes)  # an early change breaks all
    assert block_hashes("short", 256, "m") == ()


def test_rendered_prompt_grows_by_appending_a_turn() -> None:
    first = {"messages": [{"role": "system", "content": "S" * 600},
                          {"role": "user", "content": "hello"}],
             "tools": [{"type": "function", "function": {"name": "f"}}]}
    second = {**first, "messages": [*first["messages"],
                                    {"role": "assistant", "content": "hi"},
                                    {"role": "user", "content": "more"}]}
    assert render_prompt(second).startswith(render_prompt(first))
    assert render_prompt(first).startswith("<tools>")


@pytest.mark.parametrize(("body", "header", "same_as"), [
    ({"user": "u1"}, "", {"user": "u1"}),
    ({"prompt_cache_key": "k"}, "", {"prompt_cache_key": "k", "user": "other"}),
    ({"metadata": {"user_id": "abc"}}, "", {"metadata": {"user_id": "abc"}}),
    ({"previous_response_id": "resp_1"}, "", {"previous_response_id": "resp_1"}),
    ({}, "s-1", {"user": "ignored"}),
])
def test_session_comes_from_header_or_body(body: dict[str, object], header: str,
                                           same_as: dict[str, object]) -> None:
    hints = RoutingHints(256)

    def hint(b: dict[str, object], h: str) -> RoutingHint:
        made = hints(Call(Protocol.OPENAI, Op.CHAT, "m", {"messages": [], **b},
                          {"messages": []}, False, session=h), "m")
        assert made is not None
        return made

    got = hint(body, header)
    assert got.session and "u1" not in got.session and "s-1" not in got.session
    assert got.session == hint(same_as, header).session
    assert hint({}, "").session == ""


# -- the rule ------------------------------------------------------------------------------------
def view(pid: str, n: int = 0, matched: int = 0, age: float | None = None,
         **signals: float) -> View:
    return View(pid, None, n, matched, signals, age)


def test_prefix_match_outweighs_load_until_saturated() -> None:
    views = [view("a", n=4, matched=9, age=0.1, kv=0.5), view("b", age=0.1, kv=0.0)]
    assert decide(views, 10, "", {}, PARAMS).index == 0
    saturated = [view("a", n=1, matched=9, age=0.1, waiting=5), view("b", age=0.1)]
    decision = decide(saturated, 10, "", {}, PARAMS)
    assert (decision.index, decision.saturation_skips) == (1, 1)
    # every one saturated: still pick, by score
    both = [view("a", matched=9, age=0.1, kv=0.9), view("b", age=0.1, kv=0.95)]
    assert decide(both, 10, "", {}, PARAMS).index == 0


def test_stale_signals_are_ignored_and_ollama_vram_is_preferred() -> None:
    stale = view("a", age=PARAMS.max_signal_age + 0.5, waiting=50, kv=1.0)
    assert load_of(stale, 0, PARAMS) == (0.0, False)
    not_loaded, in_vram = view("a", age=0.1, loaded=0), view("b", age=0.1, loaded=1, vram=1.0)
    assert decide([not_loaded, in_vram], 0, "", {}, PARAMS).index == 1
    half = view("a", age=0.1, loaded=1, vram=0.5)
    assert decide([half, in_vram], 0, "", {}, PARAMS).index == 1


def test_ties_go_to_fewest_in_flight_then_least_recently_chosen() -> None:
    assert decide([view("a", n=1), view("b", n=1), view("c", n=0)], 0, "", {},
                  PARAMS).index == 2
    assert decide([view("a"), view("b")], 0, "", {"a": 5.0, "b": 2.0}, PARAMS).index == 1


def test_session_sticks_within_the_load_bound_and_moves_past_it() -> None:
    light = [view("a", age=0.1, kv=0.3), view("b", age=0.1, kv=0.2), view("c", age=0.1, kv=0.2)]
    hit = decide(light, 0, "a", {}, PARAMS)
    assert (hit.index, hit.affinity) == (0, AFFINITY_HIT)
    heavy = [view("a", age=0.1, kv=0.7), view("b", age=0.1, kv=0.1), view("c", age=0.1, kv=0.1)]
    moved = decide(heavy, 0, "a", {}, PARAMS)
    assert moved.affinity == AFFINITY_BREAK and moved.index != 0


def test_prefix_table_is_bounded_lru_with_ttl() -> None:
    table = PrefixTable(entries=5, ttl=10.0)
    table.record(["h1", "h2", "h3"], now=0.0)
    table.record(["x1", "x2", "x3"], now=1.0)
    assert len(table) == 5
    # the first prompt lost its deepest block, not its head
    assert table.matches(["h1", "h2", "h3"], now=2.0) == 2
    assert table.matches(["x1", "x2", "x3"], now=2.0) == 3
    assert table.matches(["x1", "x2", "x3"], now=11.5) == 0  # expired


# -- the store step, memory and Redis ------------------------------------------------------------
def hint_for(text: str, session: str = "") -> RoutingHint:
    return RoutingHint(block_hashes(text, 16, "m"), session)


Went = tuple[ProviderConfig, str, RoutingOutcome]


def go(strategy: CacheAwareStrategy, provs: list[ProviderConfig],
       hint: RoutingHint) -> Went | None:
    """``route`` as ``(provider, lease id, outcome)``."""
    routed = strategy.route("m", provs, TTL, hint)
    if routed is None:
        return None
    (provider, lease_id), outcome = routed
    assert outcome is not None
    return provider, lease_id, outcome


def route(strategy: CacheAwareStrategy, provs: list[ProviderConfig],
          hint: RoutingHint) -> tuple[str, float]:
    routed = go(strategy, provs, hint)
    assert routed is not None and routed[1] is not None and routed[2] is not None
    strategy.store.release_lease(routed[0].id, routed[1])
    return routed[0].id, routed[2].prefix_match


def test_a_conversation_returns_where_its_prefix_was_sent(store: StateStore) -> None:
    strategy, provs = CacheAwareStrategy(store), providers(4)
    first = {}
    for c in range(8):
        text = f"conversation {c} " * 20
        first[c], match = route(strategy, provs, hint_for(text))
        assert match == 0.0
    assert len(set(first.values())) == 4  # no prefix known: spread by load and recency
    for c in range(8):
        text = f"conversation {c} " * 20 + "next turn " * 10
        pid, match = route(strategy, provs, hint_for(text))
        assert pid == first[c]
        assert 0.5 < match < 1.0


def test_saturation_skip_and_signal_age_in_the_store(store: StateStore) -> None:
    strategy, provs = CacheAwareStrategy(store), providers(2)
    text = "shared system prompt " * 20
    pid, _ = route(strategy, provs, hint_for(text))
    other = "p1" if pid == "p0" else "p0"
    store.put_signals(pid, {"waiting": 9.0, "running": 4.0, "kv": 0.5})
    store.put_signals(other, {"waiting": 0.0, "kv": 0.1})
    routed = go(strategy, provs, hint_for(text + "more " * 5))
    assert routed is not None and routed[2] is not None
    assert routed[0].id == other and routed[2].saturation_skips == 1
    assert routed[2].signal_ages[pid] < 3.0
    signals = store.signals([pid, other])
    assert signals[pid][0]["waiting"] == 9.0 and signals[pid][1] >= 0
    assert routed[1] is not None
    store.release_lease(other, routed[1])


def test_sessions_stick_then_move_past_the_bound(store: StateStore) -> None:
    strategy, provs = CacheAwareStrategy(store), providers(3)
    seen = [route(strategy, provs, hint_for(f"turn {i} " * 10, "sess"))[0] for i in range(6)]
    assert len(set(seen)) == 1  # distinct prompts, one provider: the session sticks
    home = seen[0]
    for p in provs:
        store.put_signals(p.id, {"kv": 0.7 if p.id == home else 0.05})
    routed = go(strategy, provs, hint_for("again " * 10, "sess"))
    assert routed is not None and routed[2] is not None and routed[1] is not None
    assert routed[0].id != home and routed[2].affinity == AFFINITY_BREAK
    store.release_lease(routed[0].id, routed[1])
    again = go(strategy, provs, hint_for("and again " * 10, "sess"))
    assert again is not None and again[2] is not None and again[1] is not None
    assert again[0].id == routed[0].id and again[2].affinity == AFFINITY_HIT
    store.release_lease(again[0].id, again[1])


def test_prefix_table_honours_its_bound_in_the_store(store: StateStore) -> None:
    strategy = CacheAwareStrategy(store, CacheParams(prefix_entries=12))
    provs = providers(1)
    for i in range(10):
        route(strategy, provs, hint_for(f"{uuid.uuid4().hex} {i} " * 8))
    assert 0 < store.prefix_entries("p0") <= 12


def test_caps_hold_and_cooling_providers_are_skipped(store: StateStore) -> None:
    strategy, provs = CacheAwareStrategy(store), providers(2, cap=1)
    text = "same prompt " * 20
    a = go(strategy, provs, hint_for(text))
    b = go(strategy, provs, hint_for(text))
    assert a is not None and b is not None and a[0].id != b[0].id  # the cap beats the match
    assert go(strategy, provs, hint_for(text)) is None
    for routed in (a, b):
        assert routed[1] is not None
        store.release_lease(routed[0].id, routed[1])
    store.cool_down(a[0].id, 30)
    for _ in range(3):
        assert route(strategy, provs, hint_for(text))[0] == b[0].id
    store.clear_cool_down(a[0].id)


def test_stale_signals_stop_counting(store: StateStore) -> None:
    strategy = CacheAwareStrategy(store, CacheParams(max_signal_age=0.2))
    provs = providers(2)
    store.put_signals("p0", {"waiting": 50.0})
    assert {route(strategy, provs, hint_for(f"x{i} " * 10))[0] for i in range(4)} == {"p1"}
    time.sleep(0.3)  # older than the configured maximum age (0.2 s)
    assert "p0" in {route(strategy, provs, hint_for(f"y{i} " * 10))[0] for i in range(4)}


def test_a_burst_on_one_cached_prefix_spreads_before_signals_arrive() -> None:
    # no signals yet: the cached provider is crowded by the router's own in-flight count
    crowded = [view("a", n=5, matched=10), view("b"), view("c")]
    decision = decide(crowded, 10, "", {}, PARAMS)
    assert decision.index != 0 and decision.saturation_skips == 1
    assert decide([view("a", n=4, matched=10), view("b")], 10, "", {}, PARAMS).index == 0
    # busy everywhere: a difference of 5 over 10 in flight is not an imbalance
    assert decide([view("a", n=15, matched=10), view("b", n=10)], 10, "", {}, PARAMS).index == 0


def test_in_flight_crowding_counts_as_saturation_in_the_store(store: StateStore) -> None:
    strategy, provs = CacheAwareStrategy(store), providers(3)
    text = "one giant shared prefix " * 30
    held = []
    for _ in range(5):  # the burst piles onto the provider that has the prefix...
        routed = go(strategy, provs, hint_for(text + uuid.uuid4().hex))
        assert routed is not None and routed[1] is not None
        held.append(routed)
    assert len({r[0].id for r in held}) == 1
    spill = go(strategy, provs, hint_for(text + "next"))
    assert spill is not None and spill[2] is not None and spill[1] is not None
    assert spill[0].id != held[0][0].id and spill[2].saturation_skips == 1  # ...until crowded
    for provider, lease, _ in [*held, spill]:
        assert lease is not None
        store.release_lease(provider.id, lease)


def test_a_half_open_provider_takes_one_trial_at_a_time(store: StateStore) -> None:
    strategy, provs = CacheAwareStrategy(store), providers(2)
    text = "prefix that lives on p0 " * 20
    store.record_failure("p0", None, 0.05, 0.05)  # cooled down for 50 ms, then half-open
    time.sleep(0.1)  # past the cool-down: half-open
    hint = RoutingHint(block_hashes(text, 16, "m"))
    trial = go(strategy, provs, hint)
    assert trial is not None
    if trial[0].id != "p0":  # it went to p1 (no prefix yet): send p0 its trial explicitly
        store.release_lease(trial[0].id, trial[1])
        trial = go(strategy, provs[:1], hint)
        assert trial is not None
    routed = strategy.route("m", provs[:1], TTL, hint)
    assert routed is None  # p0 already runs its one trial
    (provider, lease_id), _ = strategy.route("m", provs, TTL, hint) or ((None, ""), None)
    assert provider is not None and provider.id == "p1"  # the prefix's home is busy with it
    store.release_lease("p1", lease_id)
    store.release_lease("p0", trial[1])
    # the grant said so: a trial, with the failure sequence number it saw
    again = strategy.route("m", provs[:1], TTL, hint)
    assert again is not None and again[0].trial and again[0].seq == 1
    store.release_lease("p0", again[0][1])
