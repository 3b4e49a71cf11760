"""The HTTP client for upstream calls, behind one small interface.

``Transport.request`` opens a call and returns an ``UpstreamResponse`` whose status and headers
are known and whose body is read lazily (``chunks()`` / ``lines()`` / ``read()``). Every urllib3
exception is translated here, once, into the ``UpstreamError`` tree. One pooled
``urllib3.PoolManager`` per worker keeps connections alive; proxies (``HTTP(S)_PROXY``,
``NO_PROXY``) and a CA bundle come from the settings. ``timeout`` is the connect timeout and the
longest silence between bytes, never a total. ``first_byte`` (optional, shorter) bounds the time
until the first byte of the body instead — connect, status line, headers and first read, as one
total — after which the silence limit is ``timeout`` again: the caller's first-byte deadline
(``LLM_ROUTER_FIRST_BYTE_DEADLINE``) bounds the wait for an upstream, not a stream's length.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

import urllib3
import urllib3.connection
from urllib3.exceptions import (
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from llm_router_api.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)

# Kept-alive connections per upstream host and worker: enough for a gevent worker's many streams
# (past it urllib3 opens and drops a connection per call).
POOL_SIZE = 1024
MAX_ROUTES = 1024
READ_SIZE = 65536


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    def chunks(self) -> Iterator[bytes]: ...
    def lines(self) -> Iterator[bytes]: ...
    def read(self) -> bytes: ...
    def json(self) -> Any: ...
    def close(self) -> None: ...


class Transport(Protocol):
    def request(self, method: str, url: str, *, headers: Mapping[str, str],
                body: bytes | None, timeout: float,
                first_byte: float | None = None) -> UpstreamResponse: ...

    def close(self) -> None: ...


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Complete lines without their line ending, as soon as each one arrives."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            continue
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r")
    if pending:
        yield pending.rstrip(b"\r")


def _translate(exc: Exception) -> UpstreamError:
    # NewConnectionError subclasses urllib3's TimeoutError: check it first.
    if isinstance(exc, NewConnectionError | ProtocolError):
        return UpstreamConnectError()
    if isinstance(exc, ReadTimeoutError | Urllib3Timeout):
        return UpstreamTimeout()
    return UpstreamConnectError()


class Urllib3Response:
    """A live upstream answer; the body streams, errors become ``UpstreamError``."""

    def __init__(self, raw: urllib3.HTTPResponse, silence: float | None = None) -> None:
        self._raw = raw
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers
        self._silence = silence  # the read timeout once the first byte has come

    def chunks(self) -> Iterator[bytes]:
        try:
            reads: Iterator[bytes]
            if self._raw.chunked and self._raw.supports_chunked_reads():
                reads = self._raw.read_chunked(decode_content=True)
            else:
                reads = iter(lambda: self._raw.read1(READ_SIZE), b"")
            for chunk in reads:
                if self._silence is not None:
                    self._relax()
                yield chunk
        except HTTPError as exc:
            raise _translate(exc) from exc
        except OSError as exc:
            raise UpstreamConnectError() from exc

    def _relax(self) -> None:
        """The first byte came: from now on the silence limit is the ordinary one."""
        silence, self._silence = self._silence, None
        connection = getattr(self._raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            sock.settimeout(silence)

    def lines(self) -> Iterator[bytes]:
        """Complete lines without their line ending, as soon as each one arrives."""
        return split_lines(self.chunks())

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def json(self) -> Any:
        body = self.read()
        try:
            return json.loads(body)
        except ValueError:
            raise UpstreamProtocolError() from None

    def close(self) -> None:
        self._raw.release_conn()
        self._raw.close()


class _OneSend:
    """urllib3 sends a request's head (``endheaders``) and then its body in a second ``send``;
    with a ``bytes`` body (every model call) the head is held and goes out with the body in one
    send. On loopback a send costs the sender the receiver's TCP work too
    (docs/performance.md)."""

    _body: bool = False
    _hold: bool = False
    _held: bytes | None = None

    def request(self, method: str, url: str, body: Any = None, headers: Any = None,
                **options: Any) -> None:
        self._body = isinstance(body, bytes) and bool(body) and not options.get("chunked")
        try:
            super().request(method, url, body=body, headers=headers, **options)  # type: ignore[misc]
        finally:
            self._body = self._hold = False
            self._held = None

    def endheaders(self, message_body: Any = None, **options: Any) -> None:
        self._hold = self._body and message_body is None
        try:
            super().endheaders(message_body, **options)  # type: ignore[misc]
        finally:
            self._hold = False

    def send(self, data: Any) -> None:
        if self._hold:  # the head: it goes with the body's send
            self._hold, self._held = False, bytes(data)
            return
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        super().send(data)  # type: ignore[misc]


class OneSendHTTPConnection(_OneSend, urllib3.connection.HTTPConnection):
    pass


class OneSendHTTPSConnection(_OneSend, urllib3.connection.HTTPSConnection):
    pass


def _one_send(pool: Any) -> Any:
    if isinstance(pool, urllib3.HTTPSConnectionPool):
        pool.ConnectionCls = OneSendHTTPSConnection
    elif isinstance(pool, urllib3.HTTPConnectionPool):
        pool.ConnectionCls = OneSendHTTPConnection
    return pool


class Urllib3Transport:
    """Pooled keep-alive HTTP client; thread- and gevent-safe."""

    def __init__(self, *, ca_bundle: str = "", http_proxy: str = "", https_proxy: str = "",
                 no_proxy: str = "", pool_size: int = POOL_SIZE) -> None:
        options: dict[str, Any] = {"maxsize": pool_size, "block": False, "retries": False}
        if ca_bundle:
            options["ca_certs"] = ca_bundle
        self._direct = urllib3.PoolManager(**options)
        self._proxies = {
            scheme: urllib3.ProxyManager(url, **options)
            for scheme, url in (("http", http_proxy), ("https", https_proxy)) if url
        }
        self._no_proxy = no_proxy
        self._routes: dict[str, tuple[Any, str]] = {}
        self._timeouts: dict[float, urllib3.Timeout] = {}

    def _route(self, url: str) -> tuple[Any, str]:
        """The connection pool and request target for ``url``, worked out once per URL (a
        provider has two or three): direct calls skip urllib3's per-call URL routing."""
        route = self._routes.get(url)
        if route is None:
            parts = urlsplit(url)
            proxy = self._proxies.get(parts.scheme)
            if proxy is None or proxy_bypass_environment(parts.hostname or "",
                                                         {"no": self._no_proxy}):
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                route = (_one_send(self._direct.connection_from_url(url)), target or "/")
            else:
                route = (proxy, url)
            if len(self._routes) < MAX_ROUTES:
                self._routes[url] = route
        return route

    def _timeout(self, seconds: float) -> urllib3.Timeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = urllib3.Timeout(connect=seconds, read=seconds)
        return timeout

    def request(self, method: str, url: str, *, headers: Mapping[str, str],
                body: bytes | None, timeout: float,
                first_byte: float | None = None) -> UpstreamResponse:
        pool, target = self._route(url)
        silence = None
        limit = self._timeout(timeout)
        if first_byte is not None and first_byte < timeout:
            silence = timeout
            limit = urllib3.Timeout(connect=first_byte, read=first_byte, total=first_byte)
        options: dict[str, Any] = {"body": body, "headers": dict(headers),
                                   "preload_content": False, "redirect": False,
                                   "timeout": limit}
        try:
            if isinstance(pool, urllib3.PoolManager):  # through a proxy
                raw = pool.request(method, target, **options)
            else:
                raw = pool.urlopen(method, target, retries=False, assert_same_host=False,
                                   **options)
        except HTTPError as exc:
            raise _translate(exc) from exc
        except OSError as exc:
            raise UpstreamConnectError() from exc
        return Urllib3Response(raw, silence)  # type: ignore[arg-type]

    def close(self) -> None:
        self._direct.clear()
        for pool in self._proxies.values():
            pool.clear()
