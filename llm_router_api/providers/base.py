"""The provider adapter interface: one small class per upstream ``api_type``.

An adapter knows one upstream wire format. It offers two ways to make a call:

- ``forward(provider, upstream_model, call)``: the caller speaks the adapter's own protocol, so the
  caller's JSON goes upstream with only ``model`` replaced (plus provider ``options`` the caller
  did not set), and the upstream's bytes come back as they are: one JSON body for a non-stream
  call, blocks of complete stream lines for a stream.
- ``complete(provider, upstream_model, call)``: the call is translated from the canonical
  (OpenAI) request, and the answer comes back as canonical event dicts: ``chat.completion.chunk``
  objects for a stream, one response object otherwise.

Both are generators: the HTTP call opens on the first ``next()``, and the upstream connection is
closed in their ``finally``. Failures raise the ``UpstreamError`` tree. Adapters never import
Flask, metrics or the load balancer; they get their ``Transport`` from outside.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import orjson

from llm_router_api.errors import UpstreamProtocolError, upstream_status_error
from llm_router_api.providers.transport import Transport, UpstreamResponse
from llm_router_api.schemas.calls import Call, Protocol
from llm_router_api.schemas.config import ProviderConfig

HEALTH_TIMEOUT = 5.0
MAX_ERROR_BODY = 65536


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class ProviderAdapter(ABC):
    """Talks to every provider of one ``api_type``."""

    #: The caller protocol this adapter can forward without translation.
    protocol: ClassVar[Protocol]
    #: The path probed by the background health check.
    health_path: ClassVar[str]

    def __init__(self, transport: Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout

    @abstractmethod
    def forward(self, provider: ProviderConfig, upstream_model: str,
                call: Call) -> Iterator[bytes]:
        """Same-protocol call: caller's JSON in, upstream bytes out."""

    @abstractmethod
    def complete(self, provider: ProviderConfig, upstream_model: str,
                 call: Call) -> Iterator[dict[str, Any]]:
        """Translated call: canonical request in, canonical events out."""

    def headers(self, provider: ProviderConfig, call: Call | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "*/*"}
        if provider.token:
            headers["Authorization"] = f"Bearer {provider.token}"
        if call is not None and call.request_id:
            headers["X-Request-ID"] = call.request_id
        return headers

    def health(self, provider: ProviderConfig) -> bool:
        """A cheap probe: is the provider answering and accepting our credentials?"""
        try:
            response = self._transport.request(
                "GET", provider.api_host + self.health_path,
                headers=self.headers(provider, None), body=None,
                timeout=min(self._timeout, HEALTH_TIMEOUT))
        except Exception:  # noqa: BLE001 - any failure means "not healthy"; nothing to report
            return False
        try:
            return response.status == 200
        finally:
            response.close()

    def open(self, provider: ProviderConfig, path: str, body: Mapping[str, Any],
             call: Call) -> UpstreamResponse:
        """POST ``body`` and return the live answer; an error status raises."""
        response = self._transport.request(
            "POST", provider.api_host + path, headers=self.headers(provider, call),
            body=dumps(body), timeout=self._timeout)
        if response.status >= 400:
            raise self._status_error(response)
        return response

    def _status_error(self, response: UpstreamResponse) -> Exception:
        try:
            raw = response.read()[:MAX_ERROR_BODY]
        except Exception:  # noqa: BLE001 - the status alone is enough to decide
            raw = b""
        finally:
            response.close()
        retry_after = _retry_after(response.headers.get("Retry-After"))
        return upstream_status_error(response.status, error_message(raw), retry_after)


def error_message(raw: bytes) -> str:
    """The human message inside any of the known error shapes (OpenAI, Ollama, Anthropic)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "the provider refused the request"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        return error
    return "the provider refused the request"


def _retry_after(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError() from None


def relay(response: UpstreamResponse, stream: bool,
          blocks: Callable[[UpstreamResponse], Iterator[bytes]],
          check: Callable[[bytes], Any] = parse_json) -> Iterator[bytes]:
    """A same-protocol answer as it came: the whole body (once ``check`` accepts it: a 200 with
    garbage is the provider's failure), or the stream's line blocks. Closes the response."""
    try:
        if not stream:
            raw = response.read()
            check(raw)
            yield raw
            return
        yield from blocks(response)
    finally:
        response.close()


def line_blocks(response: UpstreamResponse) -> Iterator[bytes]:
    """The body as blocks that each end on a line boundary (newline kept), as they arrive."""
    pending = b""
    for chunk in response.chunks():
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending + b"\n"
