"""The JSON body of an error the HTTP server itself decides (a malformed request line, a URI or
header too large, a bad chunk size, ...), in the protocol shape of the path when it is known.

Used by the gunicorn workers (``web.workers``), waitress (``web.waitress_server``) and the flask
development server (``web.servers``) in place of their HTML or text pages.
"""

from __future__ import annotations

import orjson

from llm_router_api.errors import HTTPClientError, RouterError, echo
from llm_router_api.protocols.shapes import error_body
from llm_router_api.schemas.calls import Protocol


def error_json(status: int, reason: str, detail: str, path: str, prefix: str) -> bytes:
    """``{"error": ...}`` in the caller's shape; ``detail`` (the server's words) is cut."""
    from llm_router_api.web.app import protocol_for  # the app module is loaded by then

    protocol = protocol_for(path, prefix) if path.startswith("/") else Protocol.OPENAI
    error: RouterError = (HTTPClientError(status, f"{reason.lower()}: {echo(detail)}")
                          if status < 500 else RouterError("internal error"))
    return orjson.dumps(error_body(protocol, error))
