"""One request's state and the endpoint call itself, free of Flask: shared by the Flask app
(every route) and ``web.fastpath`` (the model routes without Flask).

``Exchange`` is what the request hooks and the error handler need to know about a request
(id, caller protocol, start, caller key, serving provider). ``answer`` runs one endpoint:
authenticate, read and check the JSON body, admit (the key's limits), ``endpoint.handle``,
and turns its result into an ``Answer`` whose streamed body frees the key's slot after its
last byte. ``Answer`` is what the server gets: status, content type, headers, body.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length, get_input_stream

from llm_router_api.auth.access import Access
from llm_router_api.auth.guard import Guard
from llm_router_api.closing import ClosingBody
from llm_router_api.core.console import Console
from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.errors import (
    HTTPClientError,
    InvalidJSON,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    RouterError,
    ValidationFailed,
    echo,
)
from llm_router_api.formats.registry import error_body
from llm_router_api.schemas.calls import Protocol
from llm_router_api.web.browsers import AnyHeaders, BrowserPolicy
from llm_router_api.web.clientio import close_after_response
from llm_router_api.web.disconnect import client_gone_probe

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID = 128
READ_CHUNK = 65536
#: Deepest JSON nesting a request body may have (SPEC §13); orjson itself stops at 1024.
MAX_JSON_DEPTH = 128
#: The serving provider's id, only with LLM_ROUTER_EXPOSE_PROVIDER=1 (it tells callers which
#: backend served them).
PROVIDER_HEADER = "X-LLM-Router-Provider"


@dataclass(slots=True)
class Exchange:
    """What is known about the request being served, filled in as it goes."""

    request_id: str
    protocol: Protocol
    started: float
    in_flight: bool = False
    key_id: str = ""
    provider_id: str = ""
    model: str = ""
    #: The connection must close after the answer (a refused or unreadable body).
    close_connection: bool = False

    def close_after(self) -> None:
        self.close_connection = True  # the Connection: close header (flask server, waitress)
        close_after_response()  # gunicorn, which ignores that header from the app


#: The exchange the fast path is serving in this greenlet or thread (log records' request id;
#: the Flask app keeps its own in ``flask.g``).
CURRENT: ContextVar[Exchange | None] = ContextVar("llm_router_exchange", default=None)


@dataclass(slots=True)
class Answer:
    """An answer for the server; ``streamed``: ``body`` is an iterator (no Content-Length)."""

    status: int
    content_type: str
    body: bytes | Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    streamed: bool = False


def request_id(given: str) -> str:
    """The caller's X-Request-ID when valid (1-128 printable characters), else a new one.

    An invalid id is replaced whole, never cut: a cut id would look valid and match nothing.
    """
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    # 128 random bits as 32 hex digits, like uuid4().hex without a system call per request
    # (``random`` is reseeded in every forked worker); an id need not be unguessable.
    return f"{random.getrandbits(128):032x}"


def too_large(length: int | None, limit: int) -> PayloadTooLarge | None:
    """The 413 for a declared ``Content-Length`` over ``limit`` (checked before any work)."""
    if length is not None and length > limit:
        return PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}")
    return None


def open_exchange(exchange: Exchange, headers: AnyHeaders, length: int | None,
                  browsers: BrowserPolicy, limit: int) -> None:
    """What every request goes through first, on Flask and on the fast path: its request id,
    then the browser policy (403) and a declared body over ``limit`` (413), before any other
    work (SPEC §13)."""
    exchange.request_id = request_id(headers.get(REQUEST_ID_HEADER, ""))
    browsers.check(headers)
    refused = too_large(length, limit)
    if refused is not None:
        raise refused


def closes_connection(exchange: Exchange, status: int, environ: Mapping[str, Any]) -> bool:
    """Whether the answer says ``Connection: close``: after a refused body (413), whose unread
    rest must not be taken for the next request. Not under waitress, which reads whole bodies
    before the app runs and forbids hop-by-hop headers from it."""
    if status == 413:
        exchange.close_after()
    return exchange.close_connection and "waitress.client_disconnected" not in environ


def unexpected_error(error: Exception, method: str, path: str) -> RouterError:
    """An error nothing expected: logged with its traceback; the caller gets a 500 that names
    the exception class in debug (never its message, which could hold anything)."""
    logging.getLogger("llm_router").exception("unhandled error on %s %s", method, path,
                                              exc_info=error)
    return RouterError(detail=type(error).__name__)


def answer(endpoint: EndpointI, guard: Guard, exchange: Exchange, environ: dict[str, Any],
           headers: Mapping[str, str], path_params: Mapping[str, str]) -> Answer:
    """Run ``endpoint`` for this request (see the module docstring)."""
    exchange.protocol = endpoint.protocol
    config = endpoint.parts.config.current  # this request's configuration, read once
    console: Console | None = endpoint.parts.console
    # The console's playground calls the model routes with its session (SPEC §14).
    by_console = (console.caller(headers, changing=True)
                  if console is not None and endpoint.access == Access.KEY else None)
    key = None if by_console else guard.authenticate(endpoint.access, headers, config.keys)
    endpoint.check_access(headers)
    body = (json_body(environ, endpoint.settings.max_request_body_size, exchange)
            if environ.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH") and endpoint.takes_body
            else None)
    admission = None
    if endpoint.generates:
        admission = guard.admit(key, _model_of(body))
    else:
        guard.allow(key, _model_of(body))
    exchange.key_id = admission.key_id if admission else (by_console or "")
    charge = (functools.partial(guard.record_tokens, admission)
              if admission is not None and admission.charges_tokens else None)
    incoming = Incoming(body=body, headers=headers, path_params=path_params,
                        request_id=exchange.request_id, config=config, on_usage=charge,
                        client_gone=client_gone_probe(environ), secure=_is_secure(environ, headers),
                        key_id=exchange.key_id)
    try:
        result = _to_answer(endpoint.handle(incoming), exchange, endpoint.settings.expose_provider)
    except BaseException:
        guard.release(admission)
        raise
    if admission is not None:
        result.headers.update(admission.headers)
        if result.streamed:  # the key's slot is free when the last byte has gone
            result.body = ClosingBody(result.body, functools.partial(guard.release, admission))
        else:
            guard.release(admission)
    return result


def error_answer(error: RouterError, protocol: Protocol, detail: bool = False) -> Answer:
    """The error in the caller protocol's shape (``detail``: name an unexpected error's class)."""
    return Answer(error.http_status, "application/json",
                  orjson.dumps(error_body(protocol, error, detail)), error.headers())


def from_werkzeug(error: HTTPException, method: str, path: str) -> RouterError:
    """Our error for one werkzeug raised (routing, or its own body reader)."""
    status = error.code or 500
    method, path = echo(method, 16), echo(path)
    if status == 404 or status < 400:  # a redirect (never wanted here) is a path we do not serve
        return NotFound(f"no route {method} {path}")
    if status == 405:
        return MethodNotAllowed(f"{method} is not allowed on {path}")
    if status == 413:
        return PayloadTooLarge()
    if status == 400:
        return InvalidJSON("malformed request")
    if status < 500:
        return HTTPClientError(status, error.name.lower())
    return RouterError(error.description or None)


def _to_answer(result: Reply | Any, exchange: Exchange, expose_provider: bool) -> Answer:
    if not isinstance(result, Reply):
        return Answer(200, "application/json", orjson.dumps(result))
    headers = dict(result.headers)
    if expose_provider and result.provider_id:  # LLM_ROUTER_EXPOSE_PROVIDER (SPEC §10)
        headers[PROVIDER_HEADER] = result.provider_id
    exchange.provider_id = result.provider_id
    exchange.model = result.model
    return Answer(result.status, result.content_type, result.body, headers,
                  streamed=not isinstance(result.body, bytes))


def _is_secure(environ: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """Whether the caller reached us over TLS (directly, or through a proxy that says so)."""
    forwarded = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return environ.get("wsgi.url_scheme") == "https" or forwarded == "https"


def _model_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    model = body.get("model", body.get("model_name"))
    return model if isinstance(model, str) else None


def raw_body(environ: dict[str, Any], limit: int, exchange: Exchange) -> bytes:
    """The request body, or a 4xx that closes the connection (408 too slow, 400 unreadable,
    such as a bad chunk size: the server's parser raises its own exception class)."""
    try:
        return _read_body(environ, limit)
    except (RequestTimeout, PayloadTooLarge):
        exchange.close_after()
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the server's body reader raises
        exchange.close_after()
        raise InvalidJSON(f"the request body could not be read ({type(exc).__name__}: "
                          f"{echo(str(exc), 120)})") from None


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """With a ``Content-Length`` (already checked against the limit before the body was read)
    exactly that many bytes are read (fewer: the client left, a 400); a chunked body has no
    length to check, so it is read here and refused with 413 as soon as it passes the limit
    (never silently cut)."""
    if get_content_length(environ) is not None:
        return bytes(get_input_stream(environ, max_content_length=limit).read())
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while part := stream.read(min(READ_CHUNK, limit + 1 - size)):
        parts.append(part)
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
    return b"".join(parts)


def json_body(environ: dict[str, Any], limit: int, exchange: Exchange) -> Any:
    raw = raw_body(environ, limit, exchange)
    if not raw.strip():
        raise InvalidJSON("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc).lower() or "recursion" in str(exc).lower():
            raise _too_deep_error() from None
        raise InvalidJSON(f"request body is not valid JSON: {echo(str(exc))}") from None
    if not isinstance(body, dict):
        raise ValidationFailed("request body must be a JSON object", param="body")
    # Only a body with more than MAX_JSON_DEPTH brackets can be that deep (bytes.count is cheap).
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth_over(body, MAX_JSON_DEPTH):
        raise _too_deep_error()
    return body


def _too_deep_error() -> InvalidJSON:
    return InvalidJSON(f"request body is nested deeper than {MAX_JSON_DEPTH} levels",
                       code="json_too_deep")


def json_depth_over(value: Any, limit: int) -> bool:
    """Whether parsed JSON nests deeper than ``limit`` (the outer object is level 1). Visits
    containers only, never recursing in Python."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False
