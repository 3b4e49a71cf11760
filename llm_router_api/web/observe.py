"""Request-level observability in one place: the access line and the request metrics.

``tracked(body, ...)`` runs when the answer is ready (``track(response)`` in Flask's
``after_request``; ``web.fastpath`` calls it itself). It wraps the body so that the bytes are
counted as the server sends them and, when the server closes the body (after the last byte of a
stream, or when the client went away), the access line is written and ``llm_router_requests_total``,
the duration histogram and the in-flight gauge are recorded. The body itself is wrapped rather
than using ``call_on_close`` because werkzeug hands a ``direct_passthrough`` body (every
``Reply``) to the server as it is, so only the body's own ``close`` is sure to be called.
``mount_metrics`` serves the exposition at ``P/metrics`` and ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request

from llm_router_api.closing import close_if_closable
from llm_router_api.core.stats import last_usage
from llm_router_api.formats.registry import DEFAULT_PROTOCOL
from llm_router_api.web.exchange import Exchange
from llm_router_api.web.logs import access_log

if TYPE_CHECKING:  # prometheus-client is imported only when metrics are on
    from llm_router_api.core.metrics import PrometheusMetrics

#: The route of every request no URL rule matched (so scanners cannot grow the label set).
UNMATCHED = "<unmatched>"


class CountedBody:
    """A streamed body as sent, counting bytes; ``close`` closes the inner iterator first,
    then calls ``on_close`` (once)."""

    def __init__(self, inner: Iterable[Any], on_close: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_close: Callable[[int], None] | None = on_close
        self.sent = 0

    def __iter__(self) -> Iterator[Any]:
        for chunk in self._inner:
            self.sent += len(chunk.encode() if isinstance(chunk, str) else chunk)
            yield chunk

    def close(self) -> None:
        try:
            close_if_closable(self._inner)
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close(self.sent)


class ClosingList(list[Any]):
    """A whole body (still a sequence, so werkzeug sets Content-Length) with a ``close``."""

    def __init__(self, parts: Iterable[Any], size: int, on_close: Callable[[int], None]) -> None:
        super().__init__(parts)
        self._size = size
        self._on_close: Callable[[int], None] | None = on_close

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self._size)


def started(metrics: PrometheusMetrics | None) -> bool:
    """At the request's start: it is in flight (True when a gauge counts it)."""
    if metrics is None:
        return False
    metrics.request_started()
    return True


#: Told each finished request: its access fields, caller key id and tokens (in, out) if known.
Recorder = Callable[[dict[str, Any], str, "tuple[int, int] | None"], None]


def track(response: Response, metrics: PrometheusMetrics | None,
          record: Recorder | None = None) -> Response:
    """``after_request``: ``tracked`` for a Flask response."""
    exchange: Exchange | None = g.get("exchange")
    if exchange is None:  # the request hooks never ran (cannot happen after before_request)
        exchange = Exchange("", DEFAULT_PROTOCOL, time.monotonic())
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    size = (0 if request.method == "HEAD" or response.is_streamed
            else response.calculate_content_length() or 0)
    response.response = tracked(response.response, response.is_streamed, size,
                                access_fields(request.method, route, response.status_code,
                                              response.is_streamed, exchange),
                                exchange, metrics, record)
    return response


def access_fields(method: str, route: str, status: int, stream: bool,
                  exchange: Exchange) -> dict[str, Any]:
    return {"method": method, "route": route, "model": exchange.model,
            "provider": exchange.provider_id, "status": status, "duration_ms": 0.0,
            "stream": stream, "bytes": 0, "request_id": exchange.request_id}


def tracked(body: Iterable[Any], streamed: bool, size: int, fields: dict[str, Any],
            exchange: Exchange, metrics: PrometheusMetrics | None,
            record: Recorder | None = None) -> CountedBody | ClosingList:
    """The body, reporting the request when the server closes it (access line, metrics, and
    ``record``: the console's recent requests, a bounded buffer). ``size``: a whole body's."""
    begun = exchange.started
    in_flight, exchange.in_flight = exchange.in_flight, False
    key_id = exchange.key_id

    def report(sent: int) -> None:
        seconds = time.monotonic() - begun
        fields["duration_ms"] = round(seconds * 1000, 2)
        fields["bytes"] = sent
        access_log(fields)
        usage = last_usage()
        if record is not None:
            record(fields, key_id,
                   None if usage is None else (usage.input_tokens, usage.output_tokens))
        if metrics is not None and in_flight:
            metrics.request_finished(fields["route"], fields["method"], fields["status"],
                                     seconds)

    if streamed:
        return CountedBody(body, report)
    return ClosingList(body, size, report)


def mount_metrics(app: Flask, prefix: str, metrics: PrometheusMetrics,
                  authorize: Callable[[], object] = lambda: None) -> None:
    """``GET P/metrics`` and ``GET /metrics``; ``authorize`` raises when the caller may not."""
    def exposition() -> Response:
        authorize()
        body, content_type = metrics.render()
        return Response(body, status=200, content_type=content_type)

    for index, path in enumerate(dict.fromkeys((f"{prefix}/metrics", "/metrics"))):
        app.add_url_rule(path, endpoint=f"llm_router.metrics.{index}", view_func=exposition,
                         methods=["GET"])
