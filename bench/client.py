"""A minimal keep-alive HTTP/1.1 client on raw asyncio streams, for the load generator.

Written by hand so the loader costs as little CPU as possible on a shared 2-core machine:
one request is one pre-built ``bytes`` write and a response parser that understands exactly
what the stand-in and the gateway send (``Content-Length``, ``chunked``, or read-to-close for
HTTP/1.0 servers such as the Flask dev server). Only loopback targets are accepted.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")
READ_LIMIT = 1 << 20


class TargetError(ValueError):
    """The benchmark only ever talks to this machine."""


def check_loopback(host: str) -> None:
    if host not in LOOPBACK and not host.startswith("127."):
        raise TargetError(f"refusing to load {host!r}: the benchmark only targets 127.0.0.1")


def build_request(method: str, host: str, port: int, path: str, body: bytes = b"",
                  content_type: str = "application/json") -> bytes:
    """The exact bytes of one keep-alive request."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    if body or method in ("POST", "PUT", "PATCH"):
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Result:
    """One answered request. Times are ``time.perf_counter()`` seconds."""

    status: int
    body: bytes
    first_byte: float  # when the first body byte arrived (== end for an empty body)
    end: float
    keep_alive: bool


class Connection:
    """One client connection, reused while the server keeps it alive."""

    def __init__(self, host: str, port: int) -> None:
        check_loopback(host)
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, limit=READ_LIMIT)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, raw: bytes, keep_body: bool = True) -> Result:
        """Send ``raw`` (opening the connection if needed) and read the whole answer."""
        if self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        try:
            result = await read_response(self._reader, keep_body)
        except BaseException:
            self.close()
            raise
        if not result.keep_alive:
            self.close()
        return result


async def read_response(reader: asyncio.StreamReader, keep_body: bool = True) -> Result:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    status = int(rest[:3])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
    connection = headers.get(b"connection", b"")
    keep = (version == b"HTTP/1.1" and connection != b"close") or connection == b"keep-alive"
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        return await _read_chunked(reader, status, keep, keep_body)
    length = headers.get(b"content-length")
    if length is not None:
        body = await reader.readexactly(int(length)) if int(length) else b""
        now = time.perf_counter()
        return Result(status, body if keep_body else b"", now, now, keep)
    return await _read_to_close(reader, status, keep_body)


async def _read_chunked(reader: asyncio.StreamReader, status: int, keep: bool,
                        keep_body: bool) -> Result:
    parts: list[bytes] = []
    first = 0.0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            break
        data = await reader.readexactly(size + 2)
        if not first:
            first = time.perf_counter()
        if keep_body:
            parts.append(data[:-2])
    end = time.perf_counter()
    return Result(status, b"".join(parts), first or end, end, keep)


async def _read_to_close(reader: asyncio.StreamReader, status: int, keep_body: bool) -> Result:
    parts: list[bytes] = []
    first = 0.0
    while data := await reader.read(READ_LIMIT):
        if not first:
            first = time.perf_counter()
        if keep_body:
            parts.append(data)
    end = time.perf_counter()
    return Result(status, b"".join(parts), first or end, end, False)


async def fetch(host: str, port: int, raw: bytes, timeout: float = 10.0) -> Result:
    """One request on a fresh connection (control calls, health checks)."""
    conn = Connection(host, port)
    try:
        async with asyncio.timeout(timeout):
            return await conn.request(raw)
    finally:
        conn.close()


async def set_behaviour(port: int, **fields: Any) -> None:
    """Change the stand-in upstream on 127.0.0.1:``port`` (``POST /_control``)."""
    raw = build_request("POST", "127.0.0.1", port, "/_control", json.dumps(fields).encode())
    reply = await fetch("127.0.0.1", port, raw)
    if reply.status != 200:
        raise RuntimeError(f"stand-in refused {fields}: {reply.body!r}")
