"""``FanOut``: one ``CallObserver`` that tells several observers everything.

Every public method of ``CallObserver`` — those there now and any added later — is forwarded to
each observer in order, so an observer added next to the Prometheus one (the console's rolling
windows, ``core.stats``) never hides a report from it. ``meter`` is the one method with an
answer: the first observer's meter that measures anything (not the do-nothing ``Meter``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from llm_router_api.core.observer import CallObserver
from llm_router_api.core.usage import Meter
from llm_router_api.schemas.calls import Protocol

C = TypeVar("C", bound=type)


def _forwarding(cls: C) -> C:
    """Give ``cls`` a forwarding method for every public ``CallObserver`` method it does not
    define itself."""
    for name, _ in inspect.getmembers(CallObserver, inspect.isfunction):
        if not name.startswith("_") and name not in vars(cls):
            setattr(cls, name, _forward(name))
    return cls


def _forward(name: str) -> Callable[..., None]:
    def forward(self: FanOut, *args: Any, **kwargs: Any) -> None:
        for observer in self.observers:
            getattr(observer, name)(*args, **kwargs)

    forward.__name__ = name
    return forward


@_forwarding
class FanOut(CallObserver):
    def __init__(self, *observers: CallObserver | None) -> None:
        self.observers = [o for o in observers if o is not None]

    def meter(self, protocol: Protocol, stream: bool) -> Meter:
        for observer in self.observers:
            meter = observer.meter(protocol, stream)
            if type(meter) is not Meter:
                return meter
        return Meter()
