"""``ModelRoutes``: the model routes served without Flask's request context and dispatch.

A WSGI layer between ``ClientDeadline`` and Flask. A ``POST`` to one of the model routes
(chat completions, completions, embeddings, messages, responses, Ollama's chat/generate/embed,
under every prefix and alias the app mounts them at) is matched by a dict lookup of its path and
served here; everything else (other methods on those paths too: ``OPTIONS``, ``405``) goes on
to Flask unchanged. What Flask's hooks do for every request is done here in the same order,
with the same functions (``web.exchange``, ``web.observe``, ``web.browsers``):

    request id ─► browser policy (403) ─► declared body over the limit (413)
    ─► ``exchange.answer`` (auth, body, JSON limits, admission, the endpoint)
    ─► any error in the caller protocol's shape (``error_answer``; an unexpected one logged, 500)
    ─► X-Request-ID, Connection: close after a refused body, Vary/CORS
    ─► ``tracked`` body: access line, metrics and the console's log when the server closes it

Flask costs about 80 µs of CPU per request here (request context, werkzeug's ``Request`` and
``Response``, routing, hooks); this path about 15 (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length

from llm_router_api.auth.guard import Guard
from llm_router_api.closing import close_if_closable
from llm_router_api.endpoints.base import EndpointI
from llm_router_api.errors import RouterError
from llm_router_api.formats.registry import protocol_for
from llm_router_api.schemas.calls import Protocol
from llm_router_api.settings import Settings
from llm_router_api.web.browsers import BrowserPolicy
from llm_router_api.web.exchange import (
    CURRENT,
    REQUEST_ID_HEADER,
    Answer,
    Exchange,
    answer,
    closes_connection,
    error_answer,
    from_werkzeug,
    open_exchange,
    unexpected_error,
)
from llm_router_api.web.observe import Recorder, access_fields, started, tracked

if TYPE_CHECKING:
    from llm_router_api.core.metrics import PrometheusMetrics


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: (endpoint, the route as mounted: the access line's and the metrics' ``route``) per path.
Routes = Mapping[str, "tuple[EndpointI, str]"]
#: What a path's entry holds: the endpoint, its route, and the error shape before it runs.
Route = tuple[EndpointI, str, Protocol]


def status_line(status: int) -> str:
    """``200 OK``, as werkzeug writes it (its reason phrases, upper case)."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'unknown').upper()}"


class ModelRoutes:
    """WSGI: ``routes`` served here, every other request by ``app`` (Flask)."""

    def __init__(self, app: WSGIApp, routes: Routes, guard: Guard, settings: Settings,
                 metrics: PrometheusMetrics | None, record: Recorder | None) -> None:
        self.app = app
        self.routes: dict[str, Route] = {
            path: (endpoint, route, protocol_for(path, settings.prefix))
            for path, (endpoint, route) in routes.items()}
        self.guard = guard
        self.settings = settings
        self.metrics = metrics
        self.record = record
        self.browsers = BrowserPolicy(settings.cors_origins)
        self._status = {code: status_line(code) for code in HTTP_STATUS_CODES}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        hit = (self.routes.get(environ.get("PATH_INFO", ""))
               if environ.get("REQUEST_METHOD") == "POST" else None)
        if hit is None:
            return self.app(environ, start_response)
        exchange = Exchange("", hit[2], time.monotonic(), started(self.metrics))
        token = CURRENT.set(exchange)
        try:
            headers = EnvironHeaders(environ)
            reply = self._answer(hit[0], exchange, environ, headers)
            try:
                return self._respond(reply, hit[1], exchange, environ, headers, start_response)
            except BaseException:  # the server never gets the body: end it (its lease) here
                close_if_closable(reply.body)
                raise
        finally:
            CURRENT.reset(token)

    def _answer(self, endpoint: EndpointI, exchange: Exchange, environ: dict[str, Any],
                headers: EnvironHeaders) -> Answer:
        try:
            open_exchange(exchange, headers, get_content_length(environ), self.browsers,
                          self.settings.max_request_body_size)
            return answer(endpoint, self.guard, exchange, environ, dict(headers), {})
        except RouterError as error:
            failure = error
        except HTTPException as error:
            failure = from_werkzeug(error, "POST", environ["PATH_INFO"])
        except Exception as error:
            failure = unexpected_error(error, "POST", environ["PATH_INFO"])
        return error_answer(failure, exchange.protocol, self.settings.in_debug)

    def _respond(self, reply: Answer, route: str, exchange: Exchange, environ: dict[str, Any],
                 headers: EnvironHeaders, start_response: Callable[..., Any]) -> Any:
        whole = None if reply.streamed else bytes(reply.body)  # type: ignore[arg-type]
        head = [("Content-Type", reply.content_type)]
        if whole is not None:
            head.append(("Content-Length", str(len(whole))))
        head.extend((name, str(value)) for name, value in reply.headers.items())
        head.append((REQUEST_ID_HEADER, exchange.request_id))
        if closes_connection(exchange, reply.status, environ):
            head.append(("Connection", "close"))
        head.append(("Vary", "Origin"))
        head.extend(self.browsers.cors_headers(headers, "POST").items())
        fields = access_fields("POST", route, reply.status, reply.streamed, exchange)
        body = tracked(reply.body if whole is None else [whole], reply.streamed,
                       0 if whole is None else len(whole), fields, exchange, self.metrics,
                       self.record)
        status = self._status.get(reply.status) or status_line(reply.status)
        start_response(status, head)
        return body
