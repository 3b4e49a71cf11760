"""Raw HTTP over sockets, for what ordinary clients refuse to send (malformed request lines,
bad chunk sizes, stalled bodies) and for reading exactly what the server answered."""

from __future__ import annotations

import json
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Any

# A request whose headers are complete but whose body never finishes (4 of 100 bytes).
STALLED_BODY = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nContent-Length: 100\r\n\r\n{\"mo")
# A request whose headers never finish.
STALLED_HEADERS = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le"


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> RawReply:
    """Send ``data``, read until the server closes (or one whole answer arrived), parse it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        raw = read_answer(sock, time.monotonic() + timeout)
    return parse(raw)


def read_answer(sock: socket.socket, deadline: float) -> bytes:
    """Bytes until EOF, a reset, the deadline, or a complete ``Content-Length`` answer."""
    raw = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            part = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not part:
            break
        raw += part
        if _complete(raw):
            break
    return raw


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def parse(raw: bytes) -> RawReply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise AssertionError(f"not an HTTP answer: {raw[:300]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawReply(status, headers, body, raw)


def open_stalled(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, alternately stalled in the body and in the headers."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(STALLED_BODY if i % 2 == 0 else STALLED_HEADERS)
        socks.append(sock)
    return socks


def still_open(sock: socket.socket) -> bool:
    """No EOF and no answer yet (checked without waiting)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # an answer, or b"" for EOF: not waiting any more
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def wait_all_closed(socks: list[socket.socket], deadline: float) -> tuple[list[bytes], int]:
    """Read every socket until the server closes it; return what each received and how many
    were still open at ``deadline``."""
    received = {sock.fileno(): b"" for sock in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        open_count = len(socks)
        while open_count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    part = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    part = b""
                if part:
                    received[sock.fileno()] += part
                    continue
                selector.unregister(sock)
                open_count -= 1
    for sock in socks:
        sock.close()
    return list(received.values()), open_count
