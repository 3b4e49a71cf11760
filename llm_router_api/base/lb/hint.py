"""What ``cache_aware`` needs to know about one request, and what it decided.

``RoutingHint`` is built once per call by the core (``core.routing``) from the canonical request
and handed down through ``ProviderChooser.acquire`` to the strategy: the chained block hashes of
the rendered prompt (``prefix.block_hashes``) and the caller-named session, if any. A strategy
that does not use hints ignores it.

``RoutingOutcome`` is what a hint-aware strategy reports back with the lease (``Lease.routing``)
so that observers (metrics) can see the decision without the strategy knowing about metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: ``RoutingOutcome.affinity`` values.
AFFINITY_HIT = "hit"
AFFINITY_BREAK = "break"


@dataclass(frozen=True)
class RoutingHint:
    #: Chained hashes of the prompt's full blocks, first block first (empty: nothing to match).
    hashes: tuple[str, ...] = ()
    #: A stable key of the caller-named session ('' when none); never the raw caller value.
    session: str = ""


@dataclass(frozen=True)
class RoutingOutcome:
    """One ``cache_aware`` decision, as observers see it."""

    provider_id: str
    #: Fraction of the prompt's blocks the chosen provider was last sent (0..1).
    prefix_match: float = 0.0
    #: ``AFFINITY_HIT``, ``AFFINITY_BREAK`` or '' (no session, or a new one).
    affinity: str = ""
    #: Providers passed over because they were saturated.
    saturation_skips: int = 0
    #: Load (0..1) of every available candidate as the strategy saw it.
    loads: Mapping[str, float] = field(default_factory=dict)
    #: Age in seconds of each candidate's load signals (absent: none known).
    signal_ages: Mapping[str, float] = field(default_factory=dict)
