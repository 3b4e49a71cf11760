"""gunicorn worker classes: gunicorn's own, with JSON error pages and a client timeout.

``gunicorn_options`` (``web.servers``) names these instead of gunicorn's classes:

- ``SyncJSONWorker`` / ``ThreadWorker`` (``sync`` / ``gthread``): every read of a client socket
  waits at most ``LLM_ROUTER_CLIENT_TIMEOUT`` (the socket timeout), so a stalled client cannot
  hold a thread; the body's total is bounded by ``web.clientio``.
- ``GeventWorker`` (``gevent``, in ``web.gevent_worker``): the request line and headers must
  arrive within the timeout in total; see there.

All of them answer what gunicorn's parser refuses (malformed request line, invalid chunk size,
URI too long, header fields too large, ...) with a JSON body in the caller's protocol shape
instead of gunicorn's HTML page, and close the connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import uuid
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http import message as gunicorn_message
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.http.body import ChunkedReader
from gunicorn.http.message import Request
from gunicorn.workers import gthread
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from llm_router_api.errors import PayloadTooLarge, echo
from llm_router_api.settings import DEFAULT_CLIENT_TIMEOUT, DEFAULT_MAX_BODY
from llm_router_api.web.clientio import CLOSE_CONNECTION
from llm_router_api.web.server_errors import error_json

# gunicorn's parser errors -> (status, reason); any other ParseException is a 400.
PARSE_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (PayloadTooLarge, 413, "Payload Too Large"),  # ChunkTooLarge, below
    (http_errors.LimitRequestLine, 414, "URI Too Long"),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden"),
    (http_errors.ConfigurationProblem, 500, "Internal Server Error"),
)
SERVER_ERRORS = (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)
LINGER = 0.2  # seconds gthread waits for a closing client's FIN before it closes anyway
TIMED_OUT = "closed a connection whose request did not arrive within LLM_ROUTER_CLIENT_TIMEOUT"


def parse_status(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, SERVER_ERRORS) or not isinstance(exc, http_errors.ParseException):
        return 500, "Internal Server Error"
    for kind, status, reason in PARSE_STATUS:
        if isinstance(exc, kind):
            return status, reason
    return 400, "Bad Request"


def error_response(status: int, reason: str, detail: str, path: str, prefix: str) -> bytes:
    """A whole HTTP/1.1 answer carrying ``error_json``."""
    body = error_json(status, reason, detail, path, prefix)
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-ID: {uuid.uuid4().hex}\r\n\r\n")
    return head.encode("latin-1") + body


class OneWriteResponse(gunicorn_wsgi.Response):
    """gunicorn's response, with the status line and headers put on the wire in the same
    ``sendall`` as the first body bytes (or at ``close`` when there are none) instead of a
    send of their own. On loopback a send costs the sender the receiver's TCP work too: this
    saves one per request (about 5 % of a worker's CPU per non-stream request;
    docs/performance.md). ``_emit_body`` is gunicorn's hook for framing the body; what
    bypasses it (``sendfile``) gets the held head first."""

    _head: bytes = b""

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        tosend = self.default_headers()
        tosend.extend(f"{k}: {v}\r\n" for k, v in self.headers)
        self._head = util.to_bytestring("".join(tosend) + "\r\n", "latin-1")
        self.headers_sent: bool = True

    def _emit_body(self, data: bytes) -> None:
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        head, self._head = self._head, b""
        self.sock.sendall(head + data if head else data)

    def _flush_head(self) -> None:
        head, self._head = self._head, b""
        if head:
            self.sock.sendall(head)

    def sendfile(self, respiter: Any) -> bool:
        self.send_headers()
        self._flush_head()
        return bool(super().sendfile(respiter))

    def close(self) -> None:
        self.send_headers()
        head, self._head = self._head, b""
        tail = b"0\r\n\r\n" if self.chunked else b""
        if head or tail:
            self.sock.sendall(head + tail)


def use_one_write_responses() -> None:
    """In a worker process: gunicorn builds every response from ``wsgi.Response``."""
    gunicorn_wsgi.Response = OneWriteResponse


class ChunkTooLarge(PayloadTooLarge, http_errors.ParseException):
    """A chunk declared over the body limit: a 413 in the caller's shape when the app reads the
    body (``web.exchange.raw_body``), and one of gunicorn's parse errors (a 413 page from
    ``JSONErrors.handle_error``, a warning line) when gunicorn reads it: to skip the unread
    body of an answered request on a kept-alive connection."""


class BoundedChunks(ChunkedReader):
    """gunicorn's reader of a chunked request body, refusing a chunk whose size line declares
    more than the body limit: 413 as soon as that line is read, where gunicorn would wait for
    bytes the limit refuses anyway (a worker held until the client timeout by a client that
    declared ``ffffffffffffffff`` and sent three bytes). Raised while the app reads the body,
    so ``web.exchange.raw_body`` answers it in the caller's shape and closes the connection;
    the limit on the sum of the chunks stays there."""

    limit = DEFAULT_MAX_BODY

    def parse_chunk_size(self, unreader: Any, data: Any = None) -> tuple[int, Any]:
        size, rest = super().parse_chunk_size(unreader, data)
        if size > self.limit:
            raise ChunkTooLarge(f"request body is over the limit of {self.limit} bytes "
                                  f"(a chunk of {echo(str(size), 40)} bytes was declared)")
        return size, rest


def use_bounded_chunks(limit: int) -> None:
    """In a worker process: gunicorn's request reads a chunked body with ``BoundedChunks``."""
    BoundedChunks.limit = limit
    gunicorn_message.ChunkedReader = BoundedChunks


class JSONErrors:
    """Mixin for a gunicorn worker: ``handle_error`` writes JSON, and a client that timed out
    is logged as one line (gunicorn would log a traceback)."""

    log: Any
    app: Any

    def setting(self, name: str, default: Any) -> Any:
        """One of the gateway's settings (our gunicorn application carries them), else
        ``default`` (a worker class used under another application)."""
        return getattr(getattr(self.app, "settings", None), name, default)

    @property
    def client_timeout(self) -> float:
        return float(self.setting("client_timeout", DEFAULT_CLIENT_TIMEOUT))

    @property
    def prefix(self) -> str:
        return str(self.setting("prefix", "/api"))

    def init_process(self) -> None:
        self.log.error_log.addFilter(_quiet_timeouts)
        use_one_write_responses()
        use_bounded_chunks(int(self.setting("max_request_body_size", DEFAULT_MAX_BODY)))
        super().init_process()  # type: ignore[misc]

    def handle_request(self, *args: Any) -> Any:
        """gunicorn's, with ``CLOSE_CONNECTION`` set so the app can end the connection."""
        req = next(arg for arg in args if isinstance(arg, Request))
        token = CLOSE_CONNECTION.set(partial(setattr, req, "must_close", True))
        try:
            return super().handle_request(*args)  # type: ignore[misc]
        finally:
            CLOSE_CONNECTION.reset(token)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason = parse_status(exc)
        ip = (addr or ("", -1))[0]
        if status < 500:
            self.log.warning("Invalid request from ip=%s: %s", ip, echo(str(exc)))
        else:
            self.log.exception("Error handling request", exc_info=exc)
        path = str(getattr(req, "path", "") or "")
        try:
            util.write_nonblock(client, error_response(status, reason, str(exc), path, self.prefix))
            # Unread request bytes would make close() send a reset that can destroy the answer
            # before the client reads it: half-close, drain briefly, then close.
            util.close_graceful(client, timeout=1.0)
        except Exception:  # noqa: BLE001 - the client may be gone already
            self.log.debug("Failed to send error message.")


def _quiet_timeouts(record: logging.LogRecord) -> bool:
    """gunicorn logs a socket timeout (our client timeout) with a traceback; make it a line."""
    if record.exc_info and isinstance(record.exc_info[1], TimeoutError):
        record.msg, record.args = TIMED_OUT, ()
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


class SyncJSONWorker(JSONErrors, _SyncWorker):
    """sync; on SIGTERM this process lets go of the listener at once, even while it is busy
    with a request (it would otherwise keep the socket listening, and new connections would
    wait in the backlog until that request ended)."""

    # Not named *SyncWorker: gunicorn swaps such a class for its own gthread when threads > 1.

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        client.settimeout(self.client_timeout)
        super().handle(listener, client, addr)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        for listener in self.sockets:
            # Only this process's descriptor changes (never shutdown(), which would stop the
            # socket for the master and every other worker too, as when one worker is
            # replaced): it now names a fresh socket that listens nowhere. dup2 is atomic, so
            # the loop never sees a closed descriptor.
            with contextlib.suppress(OSError), socket.socket() as placeholder:
                os.dup2(placeholder.fileno(), listener.fileno())

    def accept(self, listener: Any) -> None:
        if not self.alive:  # stopping: the descriptor no longer listens
            raise BlockingIOError(errno.EAGAIN, "stopping")
        try:
            super().accept(listener)
        except OSError as exc:
            if not self.alive:
                raise BlockingIOError(errno.EAGAIN, "stopping") from exc
            raise


class _TConn(gthread.TConn):
    client_timeout = DEFAULT_CLIENT_TIMEOUT

    def init(self) -> None:
        super().init()  # the worker thread made the socket blocking just before
        self.sock.settimeout(self.client_timeout)

    def close(self, graceful: bool = False) -> None:
        # gthread lingers up to 2 s per connection for the peer's FIN, on its one poller
        # thread: stalled clients would be closed one after another. Linger briefly instead.
        if graceful:
            self.sock.setblocking(True)
            util.close_graceful(self.sock, timeout=LINGER)
        else:
            util.close(self.sock)


class ThreadWorker(JSONErrors, gthread.ThreadWorker):
    """gthread; on SIGTERM the listeners close at once (gthread keeps them open until the
    in-flight requests are done, so new connections would wait in the backlog)."""

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client_sock.setblocking(True)
        conn = _TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.client_timeout = self.client_timeout
        self.enqueue_req(conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.close()
