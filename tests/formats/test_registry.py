"""``formats/registry.py`` is the one list of caller protocols: every ``Protocol`` name comes
from a format folder through ``CALLERS``, and a format added there (a throwaway one here) is
served by everything that reads the registry, with no second list to extend.

    pytest -m unit          (seconds)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from llm_router_api import formats
from llm_router_api.core.usage import meter_for
from llm_router_api.endpoints.base import EndpointAutoLoader
from llm_router_api.errors import NotFound, RouterError
from llm_router_api.formats import registry
from llm_router_api.formats.caller import CallerFormat
from llm_router_api.formats.canonical import Usage
from llm_router_api.formats.openai.caller import OpenAICaller
from llm_router_api.formats.registry import (
    CALLERS,
    DEFAULT_PROTOCOL,
    NATIVE,
    UPSTREAMS,
    by_protocol,
    caller,
    error_body,
    protocol_for,
)
from llm_router_api.schemas.calls import Op, Protocol

pytestmark = pytest.mark.unit


def _format_folders() -> Iterator[str]:
    for info in pkgutil.iter_modules(formats.__path__):
        if info.ispkg:
            yield info.name


def test_every_format_folder_with_a_caller_side_is_in_callers_under_its_own_name() -> None:
    declared = {}
    for folder in _format_folders():
        vocab = importlib.import_module(f"llm_router_api.formats.{folder}.vocab")
        try:
            module = importlib.import_module(f"llm_router_api.formats.{folder}.caller")
        except ModuleNotFoundError:
            continue  # an upstream-only format
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, CallerFormat) \
                    and cls.__module__ == module.__name__:
                assert cls.protocol == vocab.PROTOCOL  # the folder names itself once
                declared[vocab.PROTOCOL] = cls
    assert declared, "no caller format found"
    assert {p: type(fmt) for p, fmt in CALLERS.items()} == declared


def test_every_protocol_in_use_is_a_registry_key() -> None:
    for protocol, fmt in CALLERS.items():
        assert isinstance(protocol, Protocol) and protocol == fmt.protocol
    assert DEFAULT_PROTOCOL == Protocol.OPENAI == next(iter(CALLERS))
    assert {u.forwards for u in UPSTREAMS.values()} - {None} <= set(CALLERS)
    assert set(NATIVE) <= set(CALLERS)
    endpoints = EndpointAutoLoader().discover()
    assert endpoints
    assert {e.protocol for e in endpoints} == set(CALLERS)  # each protocol has its routes


class ToyCaller(CallerFormat):
    """A caller protocol that exists only in this test: one registry entry makes it real."""

    protocol = Protocol("toy")

    def canonical(self, op: Op, body: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": body["say"]}]}

    def render(self, op: Op, events: Iterator[dict[str, Any]], stream: bool,
               model: str, body: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        yield b"toy"

    def error_body(self, error: RouterError, detail: bool = False) -> dict[str, Any]:
        return {"toy_error": error.message}

    def error_frame(self, error: RouterError) -> bytes:
        return b"toy error\n"

    def usage_of(self, obj: Any) -> Usage | None:
        return Usage(obj["in"], obj["out"]) if isinstance(obj, dict) and "in" in obj else None

    def owns_path(self, path: str, prefix: str) -> bool:
        return path.startswith("/toy/")


def test_one_registry_entry_makes_a_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = ToyCaller()
    monkeypatch.setattr(registry, "CALLERS", by_protocol(*CALLERS.values(), toy))
    assert caller(Protocol("toy")) is toy
    assert protocol_for("/toy/anything") == "toy" and protocol_for("/nowhere") == "openai"
    assert error_body(Protocol("toy"), NotFound("gone")) == {"toy_error": "gone"}
    meter = meter_for(Protocol("toy"), stream=False)
    meter.feed(b'{"in": 3, "out": 4}')
    assert meter.usage == Usage(3, 4)


def test_unregistered_protocols_and_two_formats_of_one_name_are_refused() -> None:
    with pytest.raises(KeyError):
        caller(Protocol("toy"))
    with pytest.raises(ValueError, match="share a protocol name"):
        by_protocol(OpenAICaller(), ToyCaller(), OpenAICaller())
