"""``create_app(settings, chooser=None)``: the Flask app, built fresh each call.

Wires the parts from ``core.assemble``, mounts every endpoint ``EndpointAutoLoader`` finds, and
installs the one error handler, the body-size guard and the request id. Nothing here runs at
import time.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from llm_router_api.auth.access import Access
from llm_router_api.auth.guard import Guard
from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.closing import ClosingBody
from llm_router_api.core.assemble import Parts, assemble
from llm_router_api.core.console import Console
from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointAutoLoader, EndpointI, Incoming
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
from llm_router_api.formats.registry import error_body, protocol_for
from llm_router_api.schemas.calls import Protocol
from llm_router_api.settings import Settings, load_settings
from llm_router_api.web.browsers import BrowserPolicy
from llm_router_api.web.clientio import ClientDeadline, close_after_response
from llm_router_api.web.disconnect import client_gone_probe
from llm_router_api.web.logs import configure_logging
from llm_router_api.web.observe import mount_metrics, started, track

if TYPE_CHECKING:
    from llm_router_api.core.metrics import PrometheusMetrics

log = logging.getLogger("llm_router")

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID = 128
READ_CHUNK = 65536
#: Deepest JSON nesting a request body may have (SPEC §13); orjson itself stops at 1024.
MAX_JSON_DEPTH = 128


def create_app(settings: Settings | None = None, chooser: ProviderChooser | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings)
    parts = assemble(settings, chooser)
    guard = parts.guard
    app = RouterFlask("llm_router_api", static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_request_body_size, PROPAGATE_EXCEPTIONS=False)
    # Odd slashes are merged by ClientDeadline and served; werkzeug never answers a redirect.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.wsgi_app = ClientDeadline(app.wsgi_app, settings.client_timeout)  # type: ignore[method-assign]
    app.extensions["llm_router"] = parts  # tests close it: app.extensions["llm_router"].close()
    mounted = _mount(app, parts, guard)
    if parts.metrics is not None:
        mount_metrics(app, settings.prefix, parts.metrics,
                      lambda: guard.authenticate(Access.INFO, dict(request.headers),
                                                 parts.config.current.keys))
    _install_hooks(app, settings, parts.metrics, parts.console)
    parts.start()
    # One line per worker (pid and the configuration it starts on): tells when each worker of
    # a gunicorn master can serve, and what it runs before any "configuration reloaded" line.
    log.info("llm-router ready in pid %d: sha256 %s, %d models, %d routes, strategy %s%s",
             os.getpid(), parts.config.current.sha256, len(parts.models.models),
             mounted, type(parts.chooser.strategy).__name__,
             " (proxy-only mode: built-in utilities are off)" if settings.minimum else "")
    return app


class RouterFlask(Flask):
    """Flask, with an empty ``204`` (and ``Allow``) for ``OPTIONS`` instead of an empty HTML
    page."""

    def make_default_options_response(self) -> Response:
        response = super().make_default_options_response()
        response.status_code = 204
        response.headers.pop("Content-Type", None)
        return response


def _mount(app: Flask, parts: Parts, guard: Guard) -> int:
    count = 0
    for cls in EndpointAutoLoader().endpoints(parts.settings):
        endpoint = cls(parts)
        view = _view(endpoint, guard)
        for index, route in enumerate(cls.routes(parts.settings.prefix)):
            app.add_url_rule(route, endpoint=f"{cls.__module__}.{cls.__name__}.{index}",
                             view_func=view, methods=list(cls.methods))
            count += 1
    return count


def _view(endpoint: EndpointI, guard: Guard) -> Any:
    console: Console | None = endpoint.parts.console

    def view(**path_params: str) -> Response:
        g.protocol = endpoint.protocol
        config = endpoint.parts.config.current  # this request's configuration, read once
        headers = dict(request.headers)
        # The console's playground calls the model routes with its session (SPEC §14).
        by_console = (console.caller(headers, changing=True)
                      if console is not None and endpoint.access == Access.KEY else None)
        key = None if by_console else guard.authenticate(endpoint.access, headers, config.keys)
        endpoint.check_access(headers)
        body = (_json_body(endpoint.settings.max_request_body_size)
                if request.method in ("POST", "PUT", "PATCH") and endpoint.takes_body else None)
        admission = None
        if endpoint.generates:
            admission = guard.admit(key, _model_of(body))
        else:
            guard.allow(key, _model_of(body))
        g.key_id = admission.key_id if admission else (by_console or "")
        charge = (functools.partial(guard.record_tokens, admission)
                  if admission is not None and admission.charges_tokens else None)
        incoming = Incoming(body=body, headers=headers, path_params=path_params,
                            request_id=g.request_id, config=config, on_usage=charge,
                            client_gone=client_gone_probe(request.environ),
                            secure=_is_secure(), key_id=g.key_id)
        try:
            response = to_response(endpoint.handle(incoming), endpoint.settings.expose_provider)
        except BaseException:
            guard.release(admission)
            raise
        if admission is not None:
            response.headers.update(admission.headers)
            if response.is_streamed:  # the key's slot is free when the last byte has gone
                response.response = ClosingBody(response.response,
                                                functools.partial(guard.release, admission))
            else:
                guard.release(admission)
        return response

    view.__name__ = type(endpoint).__name__
    return view


def _is_secure() -> bool:
    """Whether the caller reached us over TLS (directly, or through a proxy that says so)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def _model_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    model = body.get("model", body.get("model_name"))
    return model if isinstance(model, str) else None


def _raw_body(limit: int) -> bytes:
    """The request body, or a 4xx that closes the connection (408 too slow, 400 unreadable,
    such as a bad chunk size: the server's parser raises its own exception class)."""
    try:
        return _read_body(limit)
    except (RequestTimeout, PayloadTooLarge):
        _close_connection()
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the server's body reader raises
        _close_connection()
        raise InvalidJSON(f"the request body could not be read ({type(exc).__name__}: "
                          f"{echo(str(exc), 120)})") from None


def _close_connection() -> None:
    g.close_connection = True  # the Connection: close header (flask server, waitress)
    close_after_response()  # gunicorn, which ignores that header from the app


def _read_body(limit: int) -> bytes:
    """With a ``Content-Length`` (already checked against the limit before the body was read)
    Flask reads it; a chunked body has no length to check, so it is read here and refused with
    413 as soon as it passes the limit (never silently cut)."""
    if request.content_length is not None:
        return request.get_data(cache=False)
    stream = request.environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while part := stream.read(min(READ_CHUNK, limit + 1 - size)):
        parts.append(part)
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
    return b"".join(parts)


def _json_body(limit: int) -> Any:
    raw = _raw_body(limit)
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


#: The serving provider's id, only with LLM_ROUTER_EXPOSE_PROVIDER=1 (it tells callers which
#: backend served them).
PROVIDER_HEADER = "X-LLM-Router-Provider"


def to_response(result: Reply | Any, expose_provider: bool = False) -> Response:
    if isinstance(result, Reply):
        response = Response(result.body, status=result.status, content_type=result.content_type,
                            headers=result.headers, direct_passthrough=True)
        if expose_provider and result.provider_id:  # LLM_ROUTER_EXPOSE_PROVIDER (SPEC §10)
            response.headers[PROVIDER_HEADER] = result.provider_id
        g.provider_id = result.provider_id
        g.model = result.model
        return response
    return Response(orjson.dumps(result), status=200, content_type="application/json")


def request_id(given: str) -> str:
    """The caller's X-Request-ID when valid (1-128 printable characters), else a new one.

    An invalid id is replaced whole, never cut: a cut id would look valid and match nothing.
    """
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    return uuid.uuid4().hex


def _install_hooks(app: Flask, settings: Settings, metrics: PrometheusMetrics | None,
                   console: Console | None = None) -> None:
    browsers = BrowserPolicy(settings.cors_origins)

    @app.before_request
    def start() -> None:
        started(metrics)
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = request_id(given)
        g.protocol = protocol_for(request.path, settings.prefix)
        browsers.check(request.headers)  # before any other work (SPEC §13)
        length = request.content_length
        if length is not None and length > settings.max_request_body_size:
            raise PayloadTooLarge(f"request body is {length} bytes; the limit is "
                                  f"{settings.max_request_body_size}")

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        # The unread rest of a refused body must not be taken for the next request. Waitress
        # reads whole bodies before the app runs and forbids hop-by-hop headers from it.
        if response.status_code == 413:
            _close_connection()
        if g.get("close_connection") and "waitress.client_disconnected" not in request.environ:
            response.headers["Connection"] = "close"
        browsers.decorate(response, request.headers, request.method)
        return track(response, metrics, None if console is None else console.record)

    @app.errorhandler(RouterError)
    def router_error(error: RouterError) -> Response:
        return error_response(error, settings.in_debug)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return error_response(_from_werkzeug(error), settings.in_debug)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
        # In debug, name the exception class (never its message, which could hold anything).
        return error_response(RouterError(detail=type(error).__name__), settings.in_debug)


def _from_werkzeug(error: HTTPException) -> RouterError:
    status = error.code or 500
    method, path = echo(request.method, 16), echo(request.path)
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


def error_response(error: RouterError, detail: bool = False) -> Response:
    protocol = g.get("protocol", Protocol.OPENAI)
    body = error_body(protocol, error, detail)
    return Response(orjson.dumps(body), status=error.http_status,
                    content_type="application/json", headers=error.headers())
