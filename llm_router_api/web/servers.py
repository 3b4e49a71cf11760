"""The three ways to serve the app: flask (development), gunicorn and waitress.

Under each, request headers and body must arrive within ``LLM_ROUTER_CLIENT_TIMEOUT`` (the
server bounds the headers, ``web.clientio`` the body), the server's own error pages are JSON,
and SIGTERM closes the listening socket at once (docs/running.md).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
from functools import partial
from typing import Any

from llm_router_api.settings import Settings
from llm_router_api.web import multiproc, reload_triggers
from llm_router_api.web.logs import configure_logging

log = logging.getLogger("llm_router")


def serve(settings: Settings) -> int:
    runner = {"flask": _flask, "gunicorn": _gunicorn, "waitress": _waitress}[settings.server_type]
    if settings.server_type == "gunicorn" or settings.prometheus_multiproc_dir:
        settings = multiproc.prepare(settings)  # before any import of prometheus-client
    raise_open_files(settings.server_connections + FILES_MARGIN)
    settings = _reload_triggers(settings)
    runner(settings)
    return 0


FILES_MARGIN = 256  # descriptors besides client connections: upstreams, Redis, logs, metrics


def raise_open_files(wanted: int) -> int:
    """Raise this process's open-files limit towards ``wanted`` (as far as the hard limit
    lets; workers inherit it) and return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("open-files limit %d is below LLM_ROUTER_SERVER_CONNECTIONS + %d; raise "
                    "`ulimit -n` (hard limit %d) or lower the setting", soft, FILES_MARGIN, hard)
    return int(soft)


def _reload_triggers(settings: Settings) -> Settings:
    """Hot reload: SIGHUP and the file watch, here or (gunicorn) in the master's ``when_ready``
    hook (``gunicorn_options``)."""
    configure_logging(settings)  # the master's own lines (SIGHUP, watch) look like the rest
    settings = reload_triggers.prepare(settings)
    if settings.server_type != "gunicorn":
        reload_triggers.single_process(settings)
    return settings


def _flask(settings: Settings) -> None:
    from werkzeug.serving import WSGIRequestHandler

    from llm_router_api.web.app import create_app
    from llm_router_api.web.server_errors import error_json

    app = create_app(settings)

    class Handler(WSGIRequestHandler):
        timeout = settings.client_timeout  # every read of the socket (socketserver sets it)

        def send_error(self, code: int, message: str | None = None,
                       explain: str | None = None) -> None:
            """http.server's own refusals (bad request line, ...) as JSON, not HTML."""
            body = error_json(code, self.responses.get(code, ("error",))[0], message or "",
                              str(getattr(self, "path", "") or ""), settings.prefix)
            self.close_connection = True
            if self.request_version == "HTTP/0.9":  # the line could not be read: answer 1.1
                self.request_version = self.protocol_version
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)

    # Never Werkzeug's debugger or reloader, whatever LLM_ROUTER_IN_DEBUG says.
    app.run(host=settings.server_host, port=settings.server_port, debug=False,
            use_reloader=False, threaded=True, request_handler=Handler)


def _waitress(settings: Settings) -> None:
    from llm_router_api.web.app import create_app
    from llm_router_api.web.waitress_server import create

    server = create(create_app(settings), settings)
    signal.signal(signal.SIGTERM, lambda signum, frame: _drain_waitress(server, settings))
    log.info("waitress serving on %s:%s", settings.server_host, settings.server_port)
    server.run()


def _drain_waitress(server: Any, settings: Settings) -> None:
    """SIGTERM: close the listener, let in-flight requests finish and their bytes go out (for
    up to ``LLM_ROUTER_SHUTDOWN_GRACE`` seconds), then exit 0."""
    # The listener is closed by the event loop itself, woken through waitress's trigger: closed
    # here, inside the signal handler, its descriptor would vanish under the poll() call that
    # is retried after the handler returns.
    server.trigger.pull_trigger(partial(_close_listener, server))

    def busy() -> bool:
        return any(channel.requests or channel.total_outbufs_len
                   for channel in list(server.active_channels.values()))

    def drain() -> None:
        deadline = time.monotonic() + settings.shutdown_grace
        while busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        logging.shutdown()
        os._exit(0)

    threading.Thread(target=drain, name="llm-router-drain", daemon=True).start()


def _close_listener(server: Any) -> None:
    from waitress import wasyncore

    server.accepting = False
    wasyncore.dispatcher.close(server)  # leaves the poll map and closes the socket


def _gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    settings_ = settings

    class Application(BaseApplication):
        # Read by the worker classes in web.workers (client timeout, path prefix).
        settings = settings_

        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from llm_router_api.web.app import create_app

            return create_app(settings)  # in the worker, after fork

    Application().run()


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": f"{settings.server_host}:{settings.server_port}",
        "workers": settings.server_workers_count,
        "threads": settings.server_threads_count,
        "timeout": int(settings.timeout),
        "graceful_timeout": int(settings.shutdown_grace),
        "preload_app": False,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "llm-router",
        # SIGHUP reloads the configuration instead of replacing the workers (hot reload).
        "when_ready": reload_triggers.master_ready(settings),
    }
    if settings.use_prometheus:
        options["child_exit"] = multiproc.child_exit
    kind = settings.server_worker_class or "sync"
    if kind == "sync" and settings.server_threads_count > 1:
        kind = "gthread"  # as gunicorn itself decides
    options["worker_class"] = WORKER_CLASSES.get(kind, kind)
    # Per worker. Large on purpose (docs/running.md): stalled clients must not fill the pool.
    options["worker_connections"] = settings.server_connections
    return options


# Our hardened subclasses of gunicorn's workers (web.workers, web.gevent_worker); any other
# class name is passed to gunicorn as given.
WORKER_CLASSES = {
    "gevent": "llm_router_api.web.gevent_worker.GeventWorker",
    "gthread": "llm_router_api.web.workers.ThreadWorker",
    "sync": "llm_router_api.web.workers.SyncJSONWorker",
}
