"""``FanOut`` forwards every ``CallObserver`` method (present and future) to each observer."""

from __future__ import annotations

import inspect
from typing import Any

from llm_router_api.core.fanout import FanOut
from llm_router_api.core.observer import CallObserver
from llm_router_api.core.usage import Meter, meter_for
from llm_router_api.schemas.calls import Protocol


class Recording(CallObserver):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name.startswith("_") or name == "calls" or not callable(attribute):
            return attribute

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return record


def test_every_observer_method_reaches_every_observer() -> None:
    names = [n for n, _ in inspect.getmembers(CallObserver, inspect.isfunction)
             if not n.startswith("_") and n != "meter"]
    a, b = Recording(), Recording()
    fan = FanOut(a, None, b)
    for name in names:
        parameters = list(inspect.signature(getattr(CallObserver, name)).parameters)[1:]
        getattr(fan, name)(*[None] * len(parameters))
    assert a.calls == names and b.calls == names


def test_the_meter_is_the_first_that_measures() -> None:
    class Counting(CallObserver):
        def meter(self, protocol: Protocol, stream: bool) -> Meter:
            return meter_for(protocol, stream)

    assert type(FanOut(CallObserver()).meter(Protocol.OPENAI, True)) is Meter
    assert type(FanOut(CallObserver(), Counting()).meter(Protocol.OPENAI, True)) is not Meter
