"""Whether the caller of the current request has gone away, for work that outlives its writes.

A WSGI app only learns that its client left when a write fails. Work that writes nothing for a
while (a built-in collecting many model calls for one JSON answer) asks instead:
``client_gone_probe(environ)`` returns a cheap callable that is true once the client closed its
connection, or ``None`` when the server gives no way to tell. Servers that tell:

- gunicorn (``gunicorn.socket``, every worker class) and the flask development server
  (``werkzeug.socket``): the connection is readable and a peek reads end-of-file;
- waitress, when its request look-ahead is on (``waitress.client_disconnected``).

Bytes waiting on the socket (a pipelined next request) mean the client is still there.
"""

from __future__ import annotations

import functools
import select
import socket
from collections.abc import Callable, Mapping
from typing import Any


def client_gone_probe(environ: Mapping[str, Any]) -> Callable[[], bool] | None:
    told = environ.get("waitress.client_disconnected")
    if callable(told):
        return told
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None or not hasattr(sock, "fileno"):
        return None
    return functools.partial(_closed, sock)


def _closed(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ValueError:  # a TLS socket cannot peek: no way to tell
        return False
    except OSError:  # reset, or closed under us
        return True
