"""Errors the client raises. Each carries the HTTP ``status`` and the server's ``message``.

    LLMRouterError                  status, message, type, param, code
    ├── APIConnectionError (0)      could not reach the router, or it did not answer in time
    ├── BadRequestError (400)       a field failed validation (``param`` names it), bad JSON,
    │                               unknown language or target language; also raised before
    │                               sending when the request model rejects the arguments
    ├── AuthenticationError (401)
    ├── NotFoundError (404)         unknown model or route
    ├── RateLimitError (429)
    ├── ServerError (5xx)           502 the provider failed, 504 it timed out, 500 the router
    │   └── ServiceUnavailableError (503)   no provider free; ``retry_after`` in seconds
    └── StreamError                 a stream ended with an error line after it had begun
"""

from __future__ import annotations

from typing import Any


class LLMRouterError(Exception):
    def __init__(self, status: int, message: str, *, type: str | None = None,
                 param: str | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after


class APIConnectionError(LLMRouterError):
    pass


class BadRequestError(LLMRouterError):
    pass


class AuthenticationError(LLMRouterError):
    pass


class NotFoundError(LLMRouterError):
    pass


class RateLimitError(LLMRouterError):
    pass


class ServerError(LLMRouterError):
    pass


class ServiceUnavailableError(ServerError):
    pass


class StreamError(LLMRouterError):
    pass


_BY_STATUS: dict[int, type[LLMRouterError]] = {
    400: BadRequestError, 401: AuthenticationError, 404: NotFoundError, 413: BadRequestError,
    429: RateLimitError, 503: ServiceUnavailableError,
}


def error_from(status: int, body: Any, retry_after: str | None = None,
               cls: type[LLMRouterError] | None = None) -> LLMRouterError:
    """The exception for an error ``body`` (OpenAI, Ollama or plain shape) with ``status``."""
    error = body.get("error") if isinstance(body, dict) else None
    fields: dict[str, Any] = {}
    if isinstance(error, dict):
        message = str(error.get("message") or "request failed")
        fields = {k: error.get(k) for k in ("type", "param", "code")}
        status = int(error.get("status") or status)
    else:
        message = str(error or body or "request failed")
    if cls is None:
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else LLMRouterError)
    try:
        seconds = float(retry_after) if retry_after else None
    except ValueError:
        seconds = None
    return cls(status, message, retry_after=seconds, **fields)
