"""waitress, hardened: poll, a connection limit, a client timeout, JSON error pages, and a
listener that closes on SIGTERM.

waitress reads each request (headers and body) in its event loop before a thread runs the app,
so a stalled client costs a channel, not a thread. ``create(app, settings)`` sets:

- ``asyncore_use_poll=True``: select() cannot watch a descriptor above 1,024;
- ``connection_limit`` = ``LLM_ROUTER_SERVER_CONNECTIONS`` (past it, waitress stops accepting
  until a channel closes);
- ``channel_timeout`` = ``LLM_ROUTER_CLIENT_TIMEOUT`` (waitress closes a channel silent that
  long, never one whose request the app is serving) and, with ``Channel``, a total: a request
  whose headers and body have not all arrived within the timeout is closed too;
- ``max_request_body_size`` = ``LLM_ROUTER_MAX_REQUEST_BODY_SIZE``, also checked against each
  chunk size a chunked body declares (``BoundedChunks``);
- ``Channel.error_task_class``: waitress's own refusals (400, 413, 431, ...) as JSON in the
  caller's protocol shape.
"""

from __future__ import annotations

import math
import time
from typing import Any

from waitress import parser as waitress_parser
from waitress.channel import HTTPChannel
from waitress.receiver import ChunkedReceiver
from waitress.server import create_server
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from llm_router_api.settings import Settings
from llm_router_api.web.server_errors import error_json


def create(app: Any, settings: Settings) -> Any:
    timeout = max(1, math.ceil(settings.client_timeout))
    BoundedChunks.limit = settings.max_request_body_size
    waitress_parser.ChunkedReceiver = BoundedChunks
    server = create_server(
        app, host=settings.server_host, port=settings.server_port,
        threads=settings.server_threads_count, ident="llm-router",
        asyncore_use_poll=True, connection_limit=settings.server_connections,
        channel_timeout=timeout, cleanup_interval=max(1, min(30, timeout // 2)),
        max_request_body_size=settings.max_request_body_size)
    server.channel_class = type("Channel", (Channel,), {
        "client_timeout": settings.client_timeout, "prefix": settings.prefix})
    original = server.maintenance

    def maintenance(now: float) -> None:
        original(now)
        for channel in list(server.active_channels.values()):
            if isinstance(channel, Channel) and channel.too_slow(now):
                channel.will_close = True

    server.maintenance = maintenance
    return server


class BoundedChunks(ChunkedReceiver):
    """waitress's receiver of a chunked body, refusing (413) a body whose declared chunk sizes
    pass ``max_request_body_size`` as soon as a chunk's size line says so; waitress itself
    counts only the bytes received, so a chunk declared huge and never sent held its channel
    until the client timeout."""

    limit = 0
    error: Any

    def received(self, s: bytes) -> int:
        consumed = int(super().received(s))
        if self.error is None and self.limit and len(self) + self.chunk_remainder > self.limit:
            self.error = RequestEntityTooLarge(
                f"exceeds max_body of {self.limit} (a chunk declared more)")
        return consumed


class JSONErrorTask(ErrorTask):
    """waitress's own error answer, as JSON in the protocol shape of the request's path."""

    def execute(self) -> None:
        error = self.request.error
        status = int(getattr(error, "code", 500))
        path = str(getattr(self.request, "path", "") or "")
        body = error_json(status, str(error.reason), str(error.body), path, self.channel.prefix)
        self.status = f"{status} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    """A channel that remembers when its current request began to arrive."""

    error_task_class = JSONErrorTask
    client_timeout = 30.0
    prefix = "/api"
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None:  # the first bytes of a new request
            self.request_started = time.time()
        return bool(super().received(data))

    def too_slow(self, now: float) -> bool:
        """A request still arriving after the timeout (no app is serving it yet)."""
        return (self.request is not None and not self.requests
                and now - self.request_started > self.client_timeout)
