"""The upstream side of a format: one small adapter class per upstream wire format
(``formats/registry.py`` names the ``api_type`` values each serves).

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

Every answer is read through ``redact.Redacted``: no configured token and no provider address
reaches a caller, whether in an error message or in bytes forwarded as they came. An error line
inside a same-protocol stream is never forwarded: it raises ``UpstreamError``, which the handler
turns into the stream's one error event. ``call.deadline`` (monotonic, the caller's first-byte
deadline) shortens the wait for the upstream's first byte below ``EXTERNAL_TIMEOUT``.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import orjson

from llm_router_api.errors import (
    DeadlineExceeded,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTruncated,
    upstream_status_error,
)
from llm_router_api.http.redact import Redacted, secrets_for
from llm_router_api.http.transport import Transport, UpstreamResponse
from llm_router_api.schemas.calls import Call
from llm_router_api.schemas.config import ProviderConfig

HEALTH_TIMEOUT = 5.0
MAX_ERROR_BODY = 65536
DEFAULT_ERROR = "the provider refused the request"


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class UpstreamAdapter(ABC):
    """Talks to every provider of one upstream wire format. Which caller protocol (if any) it
    can ``forward`` to without translation is said by its line in ``formats/registry.py``."""

    #: The path probed by the background health check.
    health_path: ClassVar[str]

    def __init__(self, transport: Transport, timeout: float, tokens: Iterable[str] = ()) -> None:
        self._transport = transport
        self._timeout = timeout
        #: Every configured provider token: hidden in every answer, whichever provider sent it.
        self.tokens = tuple(sorted(set(tokens)))

    def forward(self, provider: ProviderConfig, upstream_model: str,
                call: Call) -> Iterator[bytes]:
        """Same-protocol call: caller's JSON in, upstream bytes out. Only called when the
        adapter's registry line names the caller protocol it forwards."""
        raise NotImplementedError(f"{type(self).__name__} forwards no caller protocol")

    @abstractmethod
    def complete(self, provider: ProviderConfig, upstream_model: str,
                 call: Call) -> Iterator[dict[str, Any]]:
        """Translated call: canonical request in, canonical events out."""

    def count_tokens(self, provider: ProviderConfig, upstream_model: str,
                     call: Call) -> int | None:
        """The input tokens of an Anthropic-shaped chat ``call``, counted by the provider;
        ``None`` when this provider type cannot count (``core/token_count.py`` estimates)."""
        return None

    def read_count(self, provider: ProviderConfig, path: str, body: Mapping[str, Any],
                   call: Call, field: str) -> int:
        """POST ``body`` to a counting endpoint and read the count in its answer's ``field``."""
        response = self.open(provider, path, body, call)
        try:
            answer = parse_json(response.read())
        finally:
            response.close()
        count = answer.get(field) if isinstance(answer, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UpstreamProtocolError("the provider sent a count that could not be read")
        return count

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

    def secrets(self, provider: ProviderConfig) -> tuple[bytes, ...]:
        return secrets_for(provider.api_host, provider.token, self.tokens)

    def open(self, provider: ProviderConfig, path: str, body: Mapping[str, Any],
             call: Call) -> UpstreamResponse:
        """POST ``body`` and return the live answer (secrets masked); an error status raises."""
        first_byte = None
        if call.deadline is not None:
            first_byte = call.deadline - time.monotonic()
            if first_byte <= 0:
                raise DeadlineExceeded()
        raw = self._transport.request(
            "POST", provider.api_host + path, headers=self.headers(provider, call),
            body=dumps(body), timeout=self._timeout, first_byte=first_byte)
        response = Redacted(raw, self.secrets(provider))
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


def clamped(provider: ProviderConfig, body: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``body`` with each of ``keys`` (the format's max-tokens fields) lowered to the
    provider's ``max_output_tokens`` when it asks for more (a copy when changed)."""
    cap = provider.max_output_tokens
    if cap is None:
        return body
    over = [k for k in keys if isinstance(body.get(k), int) and body[k] > cap]
    return {**body, **dict.fromkeys(over, cap)} if over else body


def error_message(raw: bytes) -> str:
    """The human message inside any of the known error shapes (OpenAI, Ollama, Anthropic).
    ``raw`` comes from a ``Redacted`` answer, so it holds no secret."""
    try:
        body = json.loads(raw)
    except ValueError:
        return DEFAULT_ERROR
    return upstream_message(body.get("error") if isinstance(body, dict) else None)


def upstream_message(error: Any, default: str = DEFAULT_ERROR) -> str:
    """The message of an upstream ``error`` value: a string, or an object with ``message``."""
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) and error else default


def error_in(obj: Any) -> UpstreamError | None:
    """The failure an upstream JSON object reports (``{"error": ...}`` and no answer), if any."""
    if isinstance(obj, dict) and obj.get("error") is not None and "choices" not in obj:
        return UpstreamError(upstream_message(obj["error"], "the provider failed"))
    return None


def _retry_after(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def truncated() -> UpstreamError:
    """The failure of a stream that ended before the format's last event."""
    return UpstreamTruncated()


def checked_blocks(blocks: Iterable[bytes],
                   split_error: Callable[[bytes], tuple[bytes, Any]],
                   ends: Callable[[bytes], bool]) -> Iterator[bytes]:
    """A same-protocol stream's blocks, passed on as they come. The upstream's own error event
    is not: the lines before it go on, then it ends the stream as a failure (the caller gets
    the gateway's one error event). A stream in which ``ends`` never saw the format's last
    event was cut short (``truncated``)."""
    ended = False
    for block in blocks:
        if b'"error"' in block:
            kept, failure = split_error(block)
            if failure is not None:
                if kept:
                    yield kept
                raise failure
        ended = ended or ends(block)
        yield block
    if not ended:
        raise truncated()


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError() from None


def relay(response: UpstreamResponse, stream: bool,
          blocks: Callable[[Iterator[bytes]], Iterator[bytes]],
          check: Callable[[bytes], Any] = parse_json) -> Iterator[bytes]:
    """A same-protocol answer as it came: the whole body (once ``check`` accepts it: a 200 with
    garbage is the provider's failure), or the stream's line blocks (``line_blocks``) read by
    the format's ``blocks`` (which checks its framing and errors). Closes the response."""
    try:
        if not stream:
            raw = response.read()
            check(raw)
            yield raw
            return
        yield from blocks(line_blocks(response))
    finally:
        response.close()


def line_blocks(response: UpstreamResponse) -> Iterator[bytes]:
    """The body as blocks that each end on a line boundary (newline kept), as they arrive."""
    pending = b""
    for chunk in response.chunks():
        if not pending and chunk.endswith(b"\n"):  # a stream's usual piece: as it came
            yield chunk
            continue
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending + b"\n"
