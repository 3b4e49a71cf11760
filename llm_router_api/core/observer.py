"""``CallObserver``: what ``ModelHandler`` reports about each attempt on a provider.

The lifecycle of one attempt, as the handler reports it::

    attempt_started(lease, strategy, failover)   a provider was acquired (failover: an earlier
                                                 attempt of the same request failed)
    ├── attempt_failed(lease, error)             it failed (before or after its first frame)
    ├── first_token(lease, seconds)              a stream's first frame arrived
    └── finished(lease, usage)                   it delivered an answer (whole, or cut by a
                                                 failure after the first frame)

    model_fell_back(model, fallback)             no provider of the request's model could serve
                                                 before the first byte; ``fallback`` is tried next

``config_loaded(models)`` says which configuration is in use (at startup and after each hot
reload) and ``config_reloaded(ok)`` counts reloads and refused reloads.

``meter(protocol, stream)`` hands the handler a token meter for the answer's frames. The base
class does nothing, so adapters, strategies and the handler stay free of any metrics library;
``core.metrics.PrometheusMetrics`` is the Prometheus implementation. Labels come from the
lease: the configured model name and provider id, never a caller-supplied name.
"""

from __future__ import annotations

from llm_router_api.base.lb.chooser import Lease
from llm_router_api.core.usage import Meter, Usage
from llm_router_api.errors import (
    ClientError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from llm_router_api.schemas.calls import Protocol
from llm_router_api.schemas.config import ModelsConfig


def error_kind(error: BaseException) -> str:
    """Bucket an attempt's failure: timeout, connection, status (the provider answered an error
    status), protocol (an unreadable answer), client (an upstream 4xx that is the caller's
    fault, passed through) or other."""
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamConnectError):
        return "connection"
    if isinstance(error, UpstreamProtocolError):
        return "protocol"
    if isinstance(error, UpstreamError):
        return "status"
    if isinstance(error, ClientError):
        return "client"
    return "other"


class CallObserver:
    """Does nothing; subclass and override what you need."""

    def attempt_started(self, lease: Lease, strategy: str, failover: bool) -> None:
        """A provider was acquired for an attempt."""

    def first_token(self, lease: Lease, seconds: float) -> None:
        """A stream's first frame arrived ``seconds`` after the attempt started."""

    def attempt_failed(self, lease: Lease, error: BaseException) -> None:
        """The attempt ended with ``error``."""

    def finished(self, lease: Lease, usage: Usage) -> None:
        """The attempt delivered an answer; its last byte has been passed on."""

    def model_fell_back(self, model: str, fallback: str) -> None:
        """A request for ``model`` moved on to the configured model ``fallback``."""

    def tool_dropped(self, kind: str) -> None:
        """A tool of type ``kind`` (a Responses built-in) was not offered to a translated
        provider."""

    def meter(self, protocol: Protocol, stream: bool) -> Meter:
        """A token meter for the caller-format frames of one answer."""
        return Meter()

    def config_loaded(self, models: ModelsConfig) -> None:
        """``models`` is the configuration in use from now on."""

    def config_reloaded(self, ok: bool) -> None:
        """A hot reload succeeded (``ok``) or was refused (nothing changed)."""
