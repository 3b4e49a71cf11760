"""The JSON body of an error the HTTP server itself decides (a malformed request line, a URI or
header too large, a bad chunk size, ...), in the protocol shape of the path when it is known.

Used by the gunicorn workers (``web.workers``), waitress (``web.waitress_server``) and the flask
development server (``web.servers``) in place of their HTML or text pages.
"""

from __future__ import annotations

import orjson

from llm_router_api.errors import HTTPClientError, RouterError, echo
from llm_router_api.formats.registry import DEFAULT_PROTOCOL, error_body, protocol_for


def error_json(status: int, reason: str, detail: str, path: str, prefix: str) -> bytes:
    """``{"error": ...}`` in the caller's shape; ``detail`` (the server's words) is cut."""
    protocol = protocol_for(path, prefix) if path.startswith("/") else DEFAULT_PROTOCOL
    error: RouterError = (HTTPClientError(status, f"{reason.lower()}: {echo(detail)}")
                          if status < 500 else RouterError("internal error"))
    return orjson.dumps(error_body(protocol, error))
