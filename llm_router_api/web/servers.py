"""The three ways to serve the app: flask (development), gunicorn and waitress."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from llm_router_api.settings import Settings
from llm_router_api.web import multiproc, reload_triggers
from llm_router_api.web.logs import configure_logging

log = logging.getLogger("llm_router")


def serve(settings: Settings) -> int:
    runner = {"flask": _flask, "gunicorn": _gunicorn, "waitress": _waitress}[settings.server_type]
    if settings.server_type == "gunicorn" or settings.prometheus_multiproc_dir:
        settings = multiproc.prepare(settings)  # before any import of prometheus-client
    settings = _reload_triggers(settings)
    runner(settings)
    return 0


def _reload_triggers(settings: Settings) -> Settings:
    """Hot reload: SIGHUP and the file watch, here or (gunicorn) in the master's ``when_ready``
    hook (``gunicorn_options``)."""
    configure_logging(settings)  # the master's own lines (SIGHUP, watch) look like the rest
    settings = reload_triggers.prepare(settings)
    if settings.server_type != "gunicorn":
        reload_triggers.single_process(settings)
    return settings


def _flask(settings: Settings) -> None:
    from llm_router_api.web.app import create_app

    app = create_app(settings)
    # Never Werkzeug's debugger or reloader, whatever LLM_ROUTER_IN_DEBUG says.
    app.run(host=settings.server_host, port=settings.server_port, debug=False,
            use_reloader=False, threaded=True)


def _waitress(settings: Settings) -> None:
    import waitress

    from llm_router_api.web.app import create_app

    server = waitress.create_server(
        create_app(settings), host=settings.server_host, port=settings.server_port,
        threads=settings.server_threads_count, ident="llm-router",
        channel_timeout=max(120, int(settings.external_timeout) + 10))
    signal.signal(signal.SIGTERM, lambda signum, frame: _drain_waitress(server, settings))
    log.info("waitress serving on %s:%s", settings.server_host, settings.server_port)
    server.run()


def _drain_waitress(server: Any, settings: Settings) -> None:
    """SIGTERM: stop accepting, let in-flight requests finish and their bytes go out (for up to
    ``LLM_ROUTER_SHUTDOWN_GRACE`` seconds), then exit 0."""
    # Stop accepting: the listener leaves the poll map (closing it here, inside the signal
    # handler, would break the select() that is retried after it); it closes at exit.
    server.del_channel()

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


def _gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):
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
    if settings.server_worker_class:
        options["worker_class"] = settings.server_worker_class
        if settings.server_worker_class == "gevent":
            options["worker_connections"] = 2000
    elif settings.server_threads_count > 1:
        options["worker_class"] = "gthread"
    return options
