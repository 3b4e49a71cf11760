"""The production worker: gunicorn's gevent worker, hardened against slow clients.

- The wait for a request line and headers is bounded in total by gunicorn's ``keepalive`` (2 s)
  or ``LLM_ROUTER_CLIENT_TIMEOUT``, whichever is shorter: gunicorn uses one timer for both the
  idle wait on a kept-alive connection and the headers, and idle connections must stay short
  (they would hold a graceful shutdown for as long). The body is bounded by ``web.clientio``. A
  stalled connection therefore holds a greenlet (a few KB) for at most the client timeout.
- ``worker_connections`` (``LLM_ROUTER_SERVER_CONNECTIONS``, default 10,000 per worker) is large
  on purpose: the pool is what decides whether a new connection is accepted at all, and it must
  not fill up with stalled clients (docs/running.md).
- JSON error pages (``web.workers.JSONErrors``).
- SIGTERM closes the listener within about 0.1 s (gunicorn checks once a second), so new
  connections are refused at once; in-flight requests get ``graceful_timeout``
  (``LLM_ROUTER_SHUTDOWN_GRACE``).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn import util
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

from llm_router_api.web.workers import LINGER, JSONErrors

TICK = 0.1  # how often the worker looks at its `alive` flag


class GeventWorker(JSONErrors, _GeventWorker):
    def timeout_ctx(self) -> Any:
        return gevent.Timeout(min(self.cfg.keepalive or self.client_timeout,
                                  self.client_timeout), False)

    def handle_request(self, *args: Any) -> Any:
        try:
            return super().handle_request(*args)
        except StopIteration:
            # The connection ends after this answer. Request bytes the app did not read (a body
            # sent to a path we refuse) would turn gunicorn's close() into a reset that can
            # destroy the answer before the client reads it: half-close and drain briefly.
            util.close_graceful(args[2], timeout=LINGER)
            raise

    def run(self) -> None:
        servers = [self._server(listener) for listener in self.sockets]
        for server in servers:
            server.start()
        notified = 0.0
        while self.alive:
            if time.monotonic() - notified >= 1.0:
                self.notify()
                notified = time.monotonic()
            gevent.sleep(TICK)
        for server in servers:
            server.close()  # stop accepting: the listening socket is closed
        self._drain(servers)

    def _server(self, listener: Any) -> StreamServer:
        listener.setblocking(1)
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        server = StreamServer(listener, handle=partial(self.handle, listener),
                              spawn=Pool(self.worker_connections), **ssl_args)
        if self.cfg.workers > 1:
            server.max_accept = 1
        return server

    def _drain(self, servers: list[StreamServer]) -> None:
        """In-flight requests finish within graceful_timeout, then the rest are killed."""
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline:
            if all(server.pool.free_count() == server.pool.size for server in servers):
                return
            self.notify()
            gevent.sleep(TICK * 5)
        self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        for server in servers:
            server.stop(timeout=1)
