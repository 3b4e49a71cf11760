"""A deliberately tiny HTTP/1.1 layer on asyncio streams.

Requests: request line, headers, and a ``Content-Length`` (or chunked) body.
Responses: fixed-length bodies, or ``Transfer-Encoding: chunked`` streams.
Keep-alive is the HTTP/1.1 default; ``Connection: close`` is honoured.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from dataclasses import dataclass
from http import HTTPStatus

READ_LIMIT = 1 << 20  # largest request head / chunk-size line accepted
LAST_CHUNK = b"0\r\n\r\n"


class BadRequest(Exception):
    """The bytes on the socket are not an HTTP/1.x request we can parse."""


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request; None on a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed inside the request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head[:-4].decode("latin-1").lstrip("\r\n").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0]!r}") from exc
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported version {version!r}")
    headers = _parse_headers(lines[1:])
    path, _, query = target.partition("?")
    body = await _read_body(reader, headers)
    return Request(method.upper(), path, query, version, headers, body)


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _read_chunked(reader)
        length = int(headers.get("content-length", "0"))
        if length < 0:
            raise ValueError(length)
        return await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise BadRequest("request body truncated or malformed") from exc
    except ValueError as exc:
        raise BadRequest("bad Content-Length or chunk size") from exc


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
        pass
    return b"".join(parts)


@functools.lru_cache(maxsize=128)
def status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = {529: "Site Overloaded"}.get(status, "Unknown")
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


def encode_headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1")


def fixed_response(
    status: int, content_type: str, body: bytes, extra: bytes, keep_alive: bool
) -> bytes:
    """A whole response with ``Content-Length``; ``extra`` is pre-encoded header lines."""
    return b"".join(
        (
            status_line(status),
            b"Content-Type: ",
            content_type.encode(),
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n" if keep_alive else b"\r\nConnection: close\r\n",
            extra,
            b"\r\n",
            body,
        )
    )


def stream_head(status: int, content_type: str, extra: bytes, keep_alive: bool) -> bytes:
    """Response head for a ``Transfer-Encoding: chunked`` body."""
    return b"".join(
        (
            status_line(status),
            b"Content-Type: ",
            content_type.encode(),
            b"\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n",
            b"" if keep_alive else b"Connection: close\r\n",
            extra,
            b"\r\n",
        )
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), sending nothing more."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
