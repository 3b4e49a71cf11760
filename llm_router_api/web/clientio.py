"""What the WSGI layer does before Flask sees a request: a deadline on the request body, and one
slash between path segments.

``ClientDeadline(app, seconds)`` wraps ``wsgi.input`` so that the body must arrive within
``LLM_ROUTER_CLIENT_TIMEOUT`` of the request reaching the app (the server bounds the headers
before that: see ``web.workers``, ``web.waitress_server`` and ``web.servers``). Lifecycle of one
request::

    __call__(environ)      deadline = now + seconds; wsgi.input -> DeadlineInput
    read(...)              at most the time left; past it -> RequestTimeout (408, then close);
                           after each read the socket's own timeout is back (the answer is not
                           bounded by this deadline)

Under gevent (the production worker) the bound is a true total (``gevent.Timeout`` around each
read); under threads it is the socket timeout set to the time left before each read, which
bounds silence, and the total is checked between reads. Waitress reads whole bodies itself
before the app runs, so there is no socket here and nothing to do.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from llm_router_api.errors import RequestTimeout

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")
MANY_SLASHES = re.compile(r"/{2,}")

#: Set by our gunicorn workers around each request (``web.workers``): makes the server close the
#: connection after the answer. gunicorn ignores a ``Connection: close`` from the app, and a body
#: that was refused half-read must not be parsed as the next request.
CLOSE_CONNECTION: ContextVar[Callable[[], None] | None] = ContextVar("close_connection",
                                                                     default=None)


def close_after_response() -> None:
    """Ask the server to close this connection once the answer is sent (when it can be asked:
    the flask server and waitress honour the ``Connection: close`` header instead)."""
    close = CLOSE_CONNECTION.get()
    if close is not None:
        close()


class ClientDeadline:
    """WSGI middleware: the request body within ``seconds``; ``//`` in paths merged into ``/``
    (``//v1/chat/completions`` is served as ``/v1/chat/completions``, never redirected)."""

    def __init__(self, app: WSGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = MANY_SLASHES.sub("/", path)
        sock = next((environ[key] for key in SOCKET_KEYS if key in environ), None)
        if isinstance(sock, socket.socket) or _is_gevent_socket(sock):
            environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], sock,
                                                  time.monotonic() + self.seconds, self.seconds)
        return self.app(environ, start_response)


def _is_gevent_socket(sock: Any) -> bool:
    return sock is not None and type(sock).__module__.startswith("gevent")


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("socket"))


class DeadlineInput:
    """``wsgi.input`` that refuses to wait past a deadline (see the module docstring)."""

    def __init__(self, stream: Any, sock: Any, deadline: float, seconds: float) -> None:
        self._stream = stream
        self._sock = sock
        self._deadline = deadline
        self._seconds = seconds
        self._gevent = _gevent_patched()

    def read(self, size: int | None = -1) -> bytes:
        return self._bounded(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._bounded(self._stream.readline, size)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _bounded(self, method: Callable[[int | None], bytes], size: int | None) -> bytes:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._late()
        if self._gevent:
            import gevent

            timer = gevent.Timeout(left)  # the 408 is only built when it fires
            try:
                with timer:
                    return method(size)
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                raise self._late() from None
        previous = self._sock.gettimeout()
        self._sock.settimeout(left)
        try:
            return method(size)
        except TimeoutError:
            raise self._late() from None
        finally:
            self._sock.settimeout(previous)

    def _late(self) -> RequestTimeout:
        return RequestTimeout(f"the request body did not arrive within {self._seconds:g} s "
                              "(LLM_ROUTER_CLIENT_TIMEOUT)")
