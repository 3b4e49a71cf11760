"""The one error tree. Each class carries the HTTP status it means.

    RouterError (500)
    ├── ClientError (400)                 the caller's mistake; never retried
    │   ├── InvalidJSON (400)
    │   ├── ValidationFailed (400)        names the field in ``param``
    │   ├── Unauthorized (401)
    │   ├── Forbidden (403)
    │   ├── NotFound (404)
    │   │   └── UnknownModel (404)
    │   ├── MethodNotAllowed (405)
    │   ├── RequestTimeout (408)          the request did not arrive within CLIENT_TIMEOUT
    │   ├── PayloadTooLarge (413)
    │   ├── RateLimited (429)             carries ``retry_after``
    │   ├── ClientClosed (499)            the caller went away; nobody reads the answer
    │   └── HTTPClientError (4xx)         a 4xx the HTTP layer decided (414, 431, ...)
    │       └── UpstreamClientError (4xx) an upstream 400/413/422, passed through
    ├── NoProviderAvailable (503)         carries ``retry_after``
    └── UpstreamError (502)               the provider failed; ``failover`` says if another may try
        ├── UpstreamConnectError (502)    refused, reset, DNS
        ├── UpstreamTimeout (504)         connect timeout or silence longer than the limit
        │   └── DeadlineExceeded (504)    the first-byte deadline passed before an attempt
        ├── UpstreamServerError (502)     the provider answered 5xx
        ├── UpstreamRejected (502)        401/403/404 upstream: the provider is misconfigured
        ├── UpstreamRateLimited (429)     408/429 upstream
        └── UpstreamProtocolError (502)   an answer we cannot read
            └── UpstreamTruncated (502)   a stream that ended before its format's last event

Adapters translate transport exceptions into ``UpstreamError`` subclasses once, with
``raise ... from``. One Flask error handler renders any ``RouterError`` in the caller's protocol.
Messages never contain provider tokens or host URLs. A value echoed in a message goes through
``echo`` (at most ``MAX_ECHO`` characters), and no message is longer than ``MAX_MESSAGE``.
"""

from __future__ import annotations

from typing import Any, ClassVar

#: Longest piece of caller input repeated in an error message (SPEC §13).
MAX_ECHO = 256
#: Longest error message (an upstream's text included); longer ones are cut.
MAX_MESSAGE = 2048


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """``value`` as text for an error message, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class RouterError(Exception):
    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        detail: Any = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.message = echo(message or self.default_message, MAX_MESSAGE)
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.detail = detail  # shown only when LLM_ROUTER_IN_DEBUG is on
        self.extra_headers = extra_headers or {}
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        return self.status

    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(-(-self.retry_after // 1))))
        return headers


class ClientError(RouterError):
    status = 400
    error_type = "invalid_request_error"
    default_message = "invalid request"


class InvalidJSON(ClientError):
    default_message = "request body is not valid JSON"


class ValidationFailed(ClientError):
    default_message = "request failed validation"


class Unauthorized(ClientError):
    status = 401
    error_type = "authentication_error"
    default_message = "missing or invalid API key"


class Forbidden(ClientError):
    status = 403
    error_type = "permission_error"
    default_message = "this key may not use that resource"


class NotFound(ClientError):
    status = 404
    error_type = "not_found_error"
    default_message = "not found"


class UnknownModel(NotFound):
    default_message = "model not found"

    def __init__(self, model: str) -> None:
        super().__init__(f"model '{echo(model)}' is not served here", param="model",
                         code="model_not_found")


class MethodNotAllowed(ClientError):
    status = 405
    default_message = "method not allowed"


class RequestTimeout(ClientError):
    status = 408
    default_message = "the request did not arrive in time"


class PayloadTooLarge(ClientError):
    status = 413
    default_message = "request body too large"


class RateLimited(ClientError):
    status = 429
    error_type = "rate_limit_error"
    default_message = "rate limited"


class ClientClosed(ClientError):
    """The caller closed its connection before the answer was ready (nginx's 499)."""

    status = 499
    default_message = "the client closed the connection"


class HTTPClientError(ClientError):
    """A 4xx carrying its own status: one the HTTP layer decided (URI too long, header fields
    too large, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self._status = status

    @property
    def http_status(self) -> int:
        return self._status


class UpstreamClientError(HTTPClientError):
    """An upstream 400/413/422: the caller's request was refused; passed through as is."""


class NoProviderAvailable(RouterError):
    status = 503
    error_type = "service_unavailable"
    default_message = "no provider is available for this model"


class StateUnavailable(RouterError):
    """The shared state store (Redis) could not be read."""

    status = 503
    error_type = "service_unavailable"
    default_message = "the response store is unavailable; try again"


class UpstreamError(RouterError):
    status = 502
    error_type = "upstream_error"
    default_message = "the provider failed"
    #: Another provider may be tried, and this one cooled down.
    failover: ClassVar[bool] = True


class UpstreamConnectError(UpstreamError):
    default_message = "could not connect to the provider"


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "timeout"
    default_message = "the provider did not answer in time"


class DeadlineExceeded(UpstreamTimeout):
    """``LLM_ROUTER_FIRST_BYTE_DEADLINE`` passed: no more attempts, and no provider is to
    blame (none is cooled down)."""

    default_message = "no provider answered within the first-byte deadline"
    failover = False


class UpstreamServerError(UpstreamError):
    default_message = "the provider answered with a server error"


class UpstreamRejected(UpstreamError):
    default_message = "provider rejected the request"


class UpstreamRateLimited(UpstreamError):
    status = 429
    error_type = "rate_limit_error"
    default_message = "the provider is rate limiting"


class UpstreamProtocolError(UpstreamError):
    default_message = "the provider sent an answer that could not be read"


class UpstreamTruncated(UpstreamProtocolError):
    """The upstream closed a stream cleanly but before its last event (``[DONE]``, Ollama's
    ``done`` line, Anthropic's ``message_stop``): the answer is incomplete. A connection that
    broke mid-stream is an ``UpstreamConnectError`` instead (the transport sees it)."""

    default_message = "the provider ended the stream early"


def upstream_status_error(status: int, message: str, retry_after: float | None) -> RouterError:
    """Map an upstream HTTP error status to our tree (SPEC §9, 'Upstream statuses')."""
    if status in (400, 413, 422):
        return UpstreamClientError(status, message)
    if status in (401, 403, 404):
        return UpstreamRejected(code=f"upstream_{status}")
    if status in (408, 429):
        return UpstreamRateLimited(code=f"upstream_{status}", retry_after=retry_after)
    if 400 <= status < 500:
        return UpstreamClientError(status, message)
    return UpstreamServerError(f"the provider answered {status}", code=f"upstream_{status}")
