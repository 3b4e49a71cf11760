"""The ``cache_aware`` decision as a pure function; ``redis_cache_lua.CHOOSE_CACHED`` mirrors it.

For each *available* candidate (not cooling down, below its cap) the store supplies its live
lease count ``n``, its prefix match (leading blocks of the prompt it was last sent / all full
blocks) and its load signals with their age. Then:

- ``load`` ∈ [0, 1]: the router's own in-flight share (``n / cap``, or without a cap
  ``n / max(most in flight, SOFT_SLOTS)``); when the signals are fresh (age ≤ ``max_age``) the
  larger of that and the signals' load: KV-cache use, 1 when an Ollama server does not have the
  model loaded, ``1 - size_vram / size`` when it is partly offloaded to the CPU. The queue
  length counts through saturation only: blended into the load, a queue seen up to a poll
  interval ago makes every decision avoid that server at once and pile onto the others
  (herding), while the router's own in-flight count is current.
- saturated: fresh signals with ``waiting ≥ saturation_waiting`` or KV use ≥ ``saturation_kv``;
  or, the router's own view between polls, ``saturation_waiting`` or more requests in flight
  beyond the least busy candidate and over ``IMBALANCE_FACTOR`` times its count (a burst on one
  cached prefix must not queue on one server for a whole poll interval). Saturated candidates
  are skipped while an unsaturated one exists.
- session affinity: the session's last provider is taken when it is in the pool and its load is
  at most ``affinity_bound × mean load + AFFINITY_SLACK`` (bounded load); past the bound it is
  left out of this pick (when others exist), so the session moves.
- otherwise the best ``prefix_weight × match + load_weight × (1 - load)``; ties: fewest in
  flight, then the least recently chosen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llm_router_api.base.lb.hint import AFFINITY_BREAK, AFFINITY_HIT

#: Without a cap, in-flight load is ``n / max(most in flight, SOFT_SLOTS)``: a handful of
#: requests on an otherwise idle pool is not "full".
SOFT_SLOTS = 8
#: Absolute slack of the affinity bound, so a single request in flight does not move a session.
AFFINITY_SLACK = 0.1
#: In-flight imbalance that counts as saturation: ``n - fewest ≥ saturation_waiting`` and
#: ``n > IMBALANCE_FACTOR × fewest``.
IMBALANCE_FACTOR = 2
EPSILON = 1e-9
SEQ_FIELD = "__seq__"


@dataclass(frozen=True)
class CacheParams:
    prefix_weight: float = 3.0
    load_weight: float = 1.0
    saturation_waiting: float = 5.0
    saturation_kv: float = 0.8
    #: Signals older than this (seconds) are ignored: 3 poll intervals.
    max_signal_age: float = 3.0
    affinity_bound: float = 1.25
    #: Per provider, the most prefix hashes remembered, and how long one is remembered (s).
    prefix_entries: int = 100_000
    prefix_ttl: float = 3600.0


@dataclass(frozen=True)
class View:
    """One available candidate as the rule sees it."""

    id: str
    cap: int | None
    in_flight: int
    matched: int
    signals: Mapping[str, float]
    #: Seconds since the signals were taken; ``None`` when there are none.
    age: float | None = None


@dataclass(frozen=True)
class Decision:
    index: int
    affinity: str
    saturation_skips: int
    loads: dict[str, float]


def load_of(view: View, most_in_flight: int, params: CacheParams,
            fewest_in_flight: int = 0) -> tuple[float, bool]:
    """(load, saturated) of one candidate."""
    crowded = (view.in_flight - fewest_in_flight >= params.saturation_waiting
               and view.in_flight > IMBALANCE_FACTOR * fewest_in_flight)
    if view.cap:
        load = view.in_flight / view.cap
    else:
        load = view.in_flight / max(most_in_flight, SOFT_SLOTS)
    if view.age is None or view.age > params.max_signal_age:
        return min(load, 1.0), crowded
    sig, saturated = 0.0, crowded
    kv = view.signals.get("kv")
    if kv is not None:
        sig = max(sig, kv)
        saturated = saturated or kv >= params.saturation_kv
    waiting = view.signals.get("waiting")
    if waiting is not None:
        saturated = saturated or waiting >= params.saturation_waiting
    if view.signals.get("loaded") == 0:
        sig = 1.0
    elif view.signals.get("vram") is not None:
        sig = max(sig, 1.0 - view.signals["vram"])
    return min(max(load, sig), 1.0), saturated


def decide(views: Sequence[View], total_blocks: int, previous: str,
           state: Mapping[str, float], params: CacheParams) -> Decision:
    """Pick among non-empty ``views``. ``previous`` is the session's last provider when it is
    one of the request's candidates (available or not), else ''."""
    most, fewest = max(v.in_flight for v in views), min(v.in_flight for v in views)
    loads, saturated = {}, set()
    for v in views:
        loads[v.id], full = load_of(v, most, params, fewest)
        if full:
            saturated.add(v.id)
    pool = [i for i, v in enumerate(views) if v.id not in saturated] or list(range(len(views)))
    skips = len(views) - len(pool)
    affinity = ""
    if previous:
        mean = sum(loads[views[i].id] for i in pool) / len(pool)
        bound = params.affinity_bound * mean + AFFINITY_SLACK
        mine = [i for i in pool if views[i].id == previous]
        if mine and loads[previous] <= bound + EPSILON:
            return Decision(mine[0], AFFINITY_HIT, skips, loads)
        affinity = AFFINITY_BREAK
        if mine and len(pool) > 1:
            pool = [i for i in pool if views[i].id != previous]
    best = min(pool, key=lambda i: _rank(views[i], loads[views[i].id], total_blocks, state,
                                        params))
    return Decision(best, affinity, skips, loads)


def score(view: View, load: float, total_blocks: int, params: CacheParams) -> float:
    match = view.matched / total_blocks if total_blocks else 0.0
    return params.prefix_weight * match + params.load_weight * (1.0 - load)


def _rank(view: View, load: float, total_blocks: int, state: Mapping[str, float],
          params: CacheParams) -> tuple[float, int, float]:
    # Scores are rounded (the Lua side rounds alike) so float noise does not break a tie.
    rounded = math.floor(score(view, load, total_blocks, params) * 1e9 + 0.5)
    return (-rounded, view.in_flight, state.get(view.id, 0.0))
