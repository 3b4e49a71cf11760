"""Each caller protocol's JSON error shape (SPEC §6)."""

from __future__ import annotations

from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.schemas.calls import Protocol

# Anthropic's error types by HTTP status.
ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
    422: "invalid_request_error", 429: "rate_limit_error",
    503: "overloaded_error", 529: "overloaded_error",
}


def openai_error(error: RouterError, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.error_type,
        "param": error.param,
        "code": error.code,
    }
    if detail and error.detail is not None:
        body["detail"] = error.detail
    return {"error": body}


def ollama_error(error: RouterError, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error.message}
    if detail and error.detail is not None:
        body["detail"] = error.detail
    return body


def anthropic_error(error: RouterError, detail: bool = False) -> dict[str, Any]:
    kind = ANTHROPIC_TYPES.get(error.http_status, "api_error")
    inner: dict[str, Any] = {"type": kind, "message": error.message}
    if detail and error.detail is not None:
        inner["detail"] = error.detail
    return {"type": "error", "error": inner}


ERROR_SHAPES = {
    Protocol.OPENAI: openai_error,
    Protocol.OLLAMA: ollama_error,
    Protocol.ANTHROPIC: anthropic_error,
}


def error_body(protocol: Protocol, error: RouterError, detail: bool = False) -> dict[str, Any]:
    return ERROR_SHAPES[protocol](error, detail)
