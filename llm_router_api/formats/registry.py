"""The one list of wire formats: caller protocols and upstream (provider) types.

Extend it here, and only here:

- a caller protocol: its ``CallerFormat`` (request → canonical, canonical → answer, error
  shape, stream content type, usage reading, which unrouted paths get its error shape) in
  ``CALLERS``; its name is the format's own (``vocab.PROTOCOL``, ``CallerFormat.protocol``),
  and ``CALLERS`` is the one list of ``Protocol`` names;
- an upstream type: one line in ``UPSTREAMS`` (``api_type`` → its adapter class, and the caller
  protocol it can forward untranslated, if any).

A caller format needs no upstream side and an upstream type needs no caller protocol
(``forwards=None``: every call to it is translated). Everything else derives its list from
here: ``core/assemble.py`` (adapters, callers), ``web/app.py`` (error shapes, a path's protocol),
``core/usage.py`` (meters), ``schemas/config.py`` (valid ``api_type`` values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.anthropic.caller import AnthropicCaller
from llm_router_api.formats.anthropic.upstream import AnthropicAdapter
from llm_router_api.formats.caller import CallerFormat
from llm_router_api.formats.ollama.caller import OllamaCaller
from llm_router_api.formats.ollama.upstream import OllamaAdapter
from llm_router_api.formats.openai.caller import OpenAICaller
from llm_router_api.formats.openai.upstream import OpenAIAdapter
from llm_router_api.formats.responses.caller import ResponsesCaller
from llm_router_api.formats.responses.upstream import ResponsesAdapter
from llm_router_api.formats.upstream import UpstreamAdapter
from llm_router_api.http.transport import Transport
from llm_router_api.schemas.calls import Protocol


@dataclass(frozen=True)
class Upstream:
    adapter: type[UpstreamAdapter]
    #: The caller protocol whose requests this upstream takes as they are (passthrough).
    forwards: Protocol | None = None


def by_protocol(*formats: CallerFormat) -> Mapping[Protocol, CallerFormat]:
    """``formats`` keyed by their protocol's name, in order; two formats of one name are a
    mistake in this file."""
    table = {fmt.protocol: fmt for fmt in formats}
    if len(table) != len(formats):
        raise ValueError(f"two caller formats share a protocol name: {[*table]}")
    return table


# Caller protocol -> its format. The first (the canonical one, ``Protocol.OPENAI``) is the
# default: paths no format owns.
CALLERS = by_protocol(OpenAICaller(), OllamaCaller(), AnthropicCaller(), ResponsesCaller())

# ``api_type`` -> its upstream. ``openai`` and ``vllm`` share one adapter (and one instance).
UPSTREAMS: Mapping[str, Upstream] = {
    "openai": Upstream(OpenAIAdapter, forwards=OpenAICaller.protocol),
    "vllm": Upstream(OpenAIAdapter, forwards=OpenAICaller.protocol),
    "ollama": Upstream(OllamaAdapter, forwards=OllamaCaller.protocol),
    "anthropic": Upstream(AnthropicAdapter, forwards=AnthropicCaller.protocol),
}

# Caller protocols a provider of any ``api_type`` may serve itself when its config says so
# (``ProviderConfig.serves_natively``): the adapter that forwards them.
NATIVE: Mapping[Protocol, type[UpstreamAdapter]] = {
    ResponsesCaller.protocol: ResponsesAdapter,
}

API_TYPES = tuple(UPSTREAMS)
DEFAULT_PROTOCOL = next(iter(CALLERS))


def caller(protocol: Protocol) -> CallerFormat:
    return CALLERS[protocol]


def native_key(protocol: Protocol) -> str:
    """The key of ``protocol``'s native forwarder among ``build_adapters``' adapters."""
    return f"native:{protocol}"


def serves_natively(provider: Any, protocol: Protocol) -> bool:
    return protocol in NATIVE and bool(provider.serves_natively(protocol))


def forwards(api_type: str) -> Protocol | None:
    """The caller protocol ``api_type`` takes untranslated (``None``: always translate)."""
    upstream = UPSTREAMS.get(api_type)
    return upstream.forwards if upstream is not None else None


def build_adapters(transport: Transport, timeout: float,
                   tokens: Iterable[str] = ()) -> dict[str, UpstreamAdapter]:
    """One adapter per ``api_type`` (one instance per adapter class); ``tokens`` (every
    configured provider token) are masked in every answer."""
    tokens = tuple(tokens)
    made: dict[type[UpstreamAdapter], UpstreamAdapter] = {}
    for upstream in UPSTREAMS.values():
        if upstream.adapter not in made:
            made[upstream.adapter] = upstream.adapter(transport, timeout, tokens)
    adapters = {api_type: made[u.adapter] for api_type, u in UPSTREAMS.items()}
    for protocol, cls in NATIVE.items():
        adapters[native_key(protocol)] = cls(transport, timeout, tokens)
    return adapters


def error_body(protocol: Protocol, error: RouterError, detail: bool = False) -> dict[str, Any]:
    return CALLERS[protocol].error_body(error, detail)


def protocol_for(path: str, prefix: str = "/api") -> Protocol:
    """Whose error shape a path gets when no endpoint matched it."""
    for protocol, fmt in CALLERS.items():
        if fmt.owns_path(path, prefix):
            return protocol
    return DEFAULT_PROTOCOL
