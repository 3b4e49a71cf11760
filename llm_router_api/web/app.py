"""``create_app(settings, chooser=None)``: the Flask app, built fresh each call.

Wires the parts from ``core.assemble``, mounts every endpoint ``EndpointAutoLoader`` finds, and
installs the one error handler, the body-size guard and the request id. Nothing here runs at
import time.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from llm_router_api.auth.access import Access
from llm_router_api.auth.guard import Guard
from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.core.assemble import Parts, assemble
from llm_router_api.core.console import Console
from llm_router_api.endpoints.base import EndpointAutoLoader, EndpointI
from llm_router_api.errors import (
    RouterError,
)
from llm_router_api.formats.registry import protocol_for
from llm_router_api.schemas.calls import Protocol
from llm_router_api.settings import Settings, load_settings
from llm_router_api.web.browsers import BrowserPolicy
from llm_router_api.web.clientio import ClientDeadline
from llm_router_api.web.exchange import (
    REQUEST_ID_HEADER,
    Exchange,
    answer,
    closes_connection,
    error_answer,
    from_werkzeug,
    open_exchange,
    unexpected_error,
)
from llm_router_api.web.fastpath import ModelRoutes
from llm_router_api.web.logs import configure_logging
from llm_router_api.web.observe import mount_metrics, started, track

if TYPE_CHECKING:
    from llm_router_api.core.metrics import PrometheusMetrics

log = logging.getLogger("llm_router")
#: The model routes ``web.fastpath`` serves: path -> (endpoint, route).
Hot = dict[str, tuple[EndpointI, str]]



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
    app.extensions["llm_router"] = parts  # tests close it: app.extensions["llm_router"].close()
    hot = _mount(app, parts, guard)
    mounted = len(list(app.url_map.iter_rules()))
    if parts.metrics is not None:
        mount_metrics(app, settings.prefix, parts.metrics,
                      lambda: guard.authenticate(Access.INFO, dict(request.headers),
                                                 parts.config.current.keys))
    _install_hooks(app, settings, parts.metrics, parts.console)
    record = None if parts.console is None else parts.console.record
    fast = ModelRoutes(app.wsgi_app, _unshared(app, hot), guard, settings, parts.metrics, record)
    app.wsgi_app = ClientDeadline(fast, settings.client_timeout)  # type: ignore[method-assign]
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


def _mount(app: Flask, parts: Parts, guard: Guard) -> Hot:
    """Every endpoint on Flask; returns the model routes ``web.fastpath`` serves itself."""
    hot: Hot = {}
    for cls in EndpointAutoLoader().endpoints(parts.settings):
        endpoint = cls(parts)
        view = _view(endpoint, guard)
        for index, route in enumerate(cls.routes(parts.settings.prefix)):
            app.add_url_rule(route, endpoint=f"{cls.__module__}.{cls.__name__}.{index}",
                             view_func=view, methods=list(cls.methods))
            if _is_model_route(cls, route):
                hot.setdefault(route, (endpoint, route))
    return hot


def _is_model_route(cls: type[EndpointI], route: str) -> bool:
    """A model call: POST only, a caller key's access, a literal path."""
    return (tuple(cls.methods) == ("POST",) and cls.access == Access.KEY
            and not cls.needs_prompts and "<" not in route)


def _unshared(app: Flask, hot: Hot) -> Hot:
    """The model routes no other URL rule shares a path with (those stay with Flask, whose
    matching decides between them)."""
    rules: dict[str, int] = {}
    for rule in app.url_map.iter_rules():
        rules[rule.rule] = rules.get(rule.rule, 0) + 1
    return {path: hit for path, hit in hot.items() if rules.get(path) == 1}


def _view(endpoint: EndpointI, guard: Guard) -> Any:
    def view(**path_params: str) -> Response:
        exchange: Exchange = g.exchange
        reply = answer(endpoint, guard, exchange, request.environ, dict(request.headers),
                       path_params)
        return Response(reply.body, status=reply.status, content_type=reply.content_type,
                        headers=reply.headers, direct_passthrough=True)

    view.__name__ = type(endpoint).__name__
    return view


def _install_hooks(app: Flask, settings: Settings, metrics: PrometheusMetrics | None,
                   console: Console | None = None) -> None:
    browsers = BrowserPolicy(settings.cors_origins)

    @app.before_request
    def start() -> None:
        g.exchange = exchange = Exchange("", protocol_for(request.path, settings.prefix),
                                         time.monotonic(), started(metrics))
        open_exchange(exchange, request.headers, request.content_length, browsers,
                      settings.max_request_body_size)

    @app.after_request
    def finish(response: Response) -> Response:
        exchange: Exchange | None = g.get("exchange")
        response.headers[REQUEST_ID_HEADER] = exchange.request_id if exchange else ""
        if exchange is not None and closes_connection(exchange, response.status_code,
                                                      request.environ):
            response.headers["Connection"] = "close"
        browsers.decorate(response, request.headers, request.method)
        return track(response, metrics, None if console is None else console.record)

    @app.errorhandler(RouterError)
    def router_error(error: RouterError) -> Response:
        return error_response(error, settings.in_debug)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return error_response(from_werkzeug(error, request.method, request.path),
                              settings.in_debug)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        return error_response(unexpected_error(error, request.method, request.path),
                              settings.in_debug)


def error_response(error: RouterError, detail: bool = False) -> Response:
    exchange: Exchange | None = g.get("exchange")
    reply = error_answer(error, exchange.protocol if exchange else Protocol.OPENAI, detail)
    return Response(reply.body, status=reply.status, content_type=reply.content_type,
                    headers=reply.headers)
