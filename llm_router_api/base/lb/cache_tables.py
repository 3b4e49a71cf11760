"""``CacheTables``: the per-process side of ``cache_aware`` (``MemoryStore`` holds one).

Per provider, the prompt-block hashes it was sent (``prefix.PrefixTable``) and its last load
signals with the time they were taken; per model and session, the provider that served it last
(an LRU bounded like a prefix table). ``MemoryStore`` calls ``decide`` under its lock, with the
candidates that are available, so the pick, the lease and the records are one atomic step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from llm_router_api.base.lb.cache_scoring import SEQ_FIELD, CacheParams, Decision, View, decide
from llm_router_api.base.lb.hint import RoutingHint
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.prefix import PrefixTable


class CacheTables:
    def __init__(self) -> None:
        self._prefixes: dict[str, PrefixTable] = {}
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._signals: dict[str, tuple[dict[str, float], float]] = {}

    # -- signals ---------------------------------------------------------------------------------
    def put_signals(self, provider_id: str, values: Mapping[str, float], now: float) -> None:
        self._signals[provider_id] = (dict(values), now)

    def signals(self, provider_ids: Sequence[str],
                now: float) -> dict[str, tuple[dict[str, float], float]]:
        return {pid: (dict(values), max(0.0, now - taken))
                for pid, (values, taken) in self._signals.items() if pid in provider_ids}

    # -- prefixes --------------------------------------------------------------------------------
    def table(self, provider_id: str, params: CacheParams) -> PrefixTable:
        table = self._prefixes.get(provider_id)
        if table is None:
            table = self._prefixes[provider_id] = PrefixTable(params.prefix_entries,
                                                              params.prefix_ttl)
        return table

    def prefix_size(self, provider_id: str) -> int:
        table = self._prefixes.get(provider_id)
        return 0 if table is None else len(table)

    # -- the decision ----------------------------------------------------------------------------
    def decide(self, session_key: str, candidates: Sequence[Candidate],
               available: Sequence[Candidate], in_flight: Mapping[str, int],
               hint: RoutingHint, params: CacheParams, state: dict[str, float],
               now: float) -> tuple[Decision, list[View]]:
        views = [self._view(c, in_flight[c.id], hint, params, now) for c in available]
        previous = self._previous(session_key, now) if hint.session else ""
        if previous not in {c.id for c in candidates}:
            previous = ""
        decision = decide(views, len(hint.hashes), previous, state, params)
        chosen = views[decision.index].id
        sequence = state.get(SEQ_FIELD, 0.0) + 1
        state.update({SEQ_FIELD: sequence, chosen: sequence})
        self.table(chosen, params).record(hint.hashes, now)
        if hint.session:
            self._remember(session_key, chosen, now + params.prefix_ttl, params.prefix_entries)
        return decision, views

    def _view(self, candidate: Candidate, in_flight: int, hint: RoutingHint,
              params: CacheParams, now: float) -> View:
        signals, taken = self._signals.get(candidate.id, ({}, None))
        return View(candidate.id, candidate.cap, in_flight,
                    self.table(candidate.id, params).matches(hint.hashes, now), signals,
                    None if taken is None else max(0.0, now - taken))

    def _previous(self, session_key: str, now: float) -> str:
        entry = self._sessions.get(session_key)
        if entry is None or entry[1] <= now:
            return ""
        return entry[0]

    def _remember(self, session_key: str, provider_id: str, expiry: float, bound: int) -> None:
        self._sessions[session_key] = (provider_id, expiry)
        self._sessions.move_to_end(session_key)
        while len(self._sessions) > bound:
            self._sessions.popitem(last=False)
