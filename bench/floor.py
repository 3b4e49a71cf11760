"""The floor of the stack: a featureless relay on the same server, run as ``--compare floor``.

gunicorn + gevent workers and urllib3 to the upstream, as the gateway, but nothing else: no
Flask, no validation, no routing state, no metrics, no access log, no secret masking. Every
request is sent to ``BENCH_UPSTREAM`` (``host:port``) with the same path and body, and the
answer comes back as it came (a stream chunk by chunk). What this costs per request and per
chunk is what the gateway cannot go below without changing the server or the client library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import urllib3

_HOST, _, _PORT = os.environ.get("BENCH_UPSTREAM", "127.0.0.1:1").partition(":")
_POOL = urllib3.HTTPConnectionPool(_HOST, int(_PORT), maxsize=1024, retries=False)
_HEALTH = b'{"models": {}}'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if environ["REQUEST_METHOD"] == "GET":
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(_HEALTH)))])
        return [_HEALTH]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    answer = _POOL.urlopen("POST", path, body=body, headers={"Content-Type": "application/json"},
                           preload_content=False, redirect=False)
    content_type = answer.headers.get("Content-Type", "application/json")
    if "event-stream" in content_type:
        start_response(f"{answer.status} OK", [("Content-Type", content_type)])
        return _relay(answer)
    data = answer.read()
    answer.release_conn()
    start_response(f"{answer.status} OK", [("Content-Type", content_type),
                                           ("Content-Length", str(len(data)))])
    return [data]


def _relay(answer: Any) -> Iterator[bytes]:
    try:
        yield from answer.read_chunked(decode_content=False)
    finally:
        answer.release_conn()
