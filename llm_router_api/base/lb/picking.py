"""The pick rules the built-in strategies hand to a state store, as pure functions.

A store applies one rule atomically together with the lease it grants (``StateStore.choose_lease``):
``MemoryStore`` runs these functions under its lock; ``RedisStore`` runs the same rules as one Lua
script (``redis_lua.CHOOSE``), which must stay equivalent (the tests run every strategy on both).

Each rule sees the *available* candidates (not cooling down, below their cap) in config order,
their live lease counts and the rule's state hash, and returns the index of the pick and the state
fields to write back.

- ``first``: the first available candidate.
- ``balanced``: fewest leases; ties go to the least recently chosen (a sequence number per pick).
- ``weighted``: Tijdeman's chairman-assignment rule (earliest deadline among the candidates that
  may still be picked), which keeps every provider within one pick of ``n·w/Σw`` after any ``n``
  picks; smooth weighted round-robin can drift past one. Counts are clamped into that band when
  the candidate set or the weights change, so a provider that was away gets no burst on return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RULES = ("first", "balanced", "weighted")
SEQ_FIELD = "__seq__"
PICKS_FIELD = "__n__"
EPSILON = 1e-9


@dataclass(frozen=True)
class Candidate:
    """A provider as a pick rule sees it."""

    id: str
    cap: int | None = None  # None: unlimited
    weight: float = 1.0


Pick = tuple[int, dict[str, float]]


def pick(rule: str, available: Sequence[Candidate], in_flight: Mapping[str, int],
         state: Mapping[str, float]) -> Pick:
    """Apply ``rule`` to a non-empty ``available``; return (index, state updates)."""
    if rule == "first":
        return 0, {}
    if rule == "balanced":
        return _balanced(available, in_flight, state)
    if rule == "weighted":
        return _weighted(available, state)
    raise ValueError(f"unknown pick rule '{rule}'")


def _balanced(available: Sequence[Candidate], in_flight: Mapping[str, int],
              state: Mapping[str, float]) -> Pick:
    best = min(range(len(available)),
               key=lambda i: (in_flight.get(available[i].id, 0),
                              state.get(available[i].id, 0.0)))
    sequence = state.get(SEQ_FIELD, 0.0) + 1
    return best, {SEQ_FIELD: sequence, available[best].id: sequence}


def _weighted(available: Sequence[Candidate], state: Mapping[str, float]) -> Pick:
    picks = state.get(PICKS_FIELD, 0.0)
    total = sum(c.weight for c in available)
    shares = [c.weight / total for c in available]
    delta = 1 / (2 * len(available) - 2) if len(available) > 1 else 0.0
    counts = [min(max(state.get(c.id, 0.0), picks * r - 1), picks * r + 1)
              for c, r in zip(available, shares, strict=True)]
    step = picks + 1
    eligible = [i for i, r in enumerate(shares)
                if counts[i] + 1 - step * r <= 1 - delta + EPSILON] or list(range(len(shares)))
    best = min(eligible, key=lambda i: (counts[i] + 1 - delta) / shares[i])
    counts[best] += 1
    updates = {c.id: n for c, n in zip(available, counts, strict=True)}
    updates[PICKS_FIELD] = step
    return best, updates
