"""``ChooseProviderStrategyI``: how one provider is picked among a model's candidates.

A strategy sees only candidates the chooser allows (healthy, not yet tried in this request, with
a free slot as far as the state shows) and returns one of them, or ``None`` when it will not pick
any. ``put_provider`` is called exactly once for every provider ``get_provider`` returned: when
its slot could not be taken, or when the request that used it ends, however it ends.
``observe_latency`` reports the time to first token of a finished call, for strategies that
adapt. State lives in the ``StateStore`` handed in, so the same strategy works in one process
(memory) or across workers (Redis).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.schemas.config import ProviderConfig


class ChooseProviderStrategyI(ABC):
    name: ClassVar[str] = "custom"
    #: Slots per provider when its config sets no ``max_concurrency`` (``None``: unlimited).
    default_max_concurrency: ClassVar[int | None] = None

    def __init__(self, store: StateStore | None = None) -> None:
        self.store: StateStore = store if store is not None else MemoryStore()

    @abstractmethod
    def get_provider(self, model: str,
                     providers: Sequence[ProviderConfig]) -> ProviderConfig | None:
        """Pick one of ``providers`` for ``model`` (never empty), or ``None``."""

    def put_provider(self, model: str, provider: ProviderConfig) -> None:  # noqa: B027
        """The request that used ``provider`` has ended. Default: nothing to undo."""

    def observe_latency(self, model: str, provider: ProviderConfig,  # noqa: B027
                        seconds: float) -> None:
        """A finished call's time to first token (stream) or total time (non-stream)."""
