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
    ├── StateUnavailable (503)            the shared state store (Redis) could not be read
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
    """The root. A subclass states what differs from its parent in its class line:
    ``class NotFound(ClientError, status=404, error_type="not_found_error", message="not found")``.
    """

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "internal error"

    def __init_subclass__(cls, *, status: int | None = None, error_type: str | None = None,
                          message: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
        if error_type is not None:
            cls.error_type = error_type
        if message is not None:
            cls.default_message = message

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


class ClientError(RouterError, status=400, error_type="invalid_request_error",
                  message="invalid request"):
    """The caller's mistake; never retried."""


class InvalidJSON(ClientError, message="request body is not valid JSON"):
    pass


class ValidationFailed(ClientError, message="request failed validation"):
    """Names the failing field in ``param``."""


class Unauthorized(ClientError, status=401, error_type="authentication_error",
                   message="missing or invalid API key"):
    pass


class Forbidden(ClientError, status=403, error_type="permission_error",
                message="this key may not use that resource"):
    pass


class NotFound(ClientError, status=404, error_type="not_found_error", message="not found"):
    pass


class UnknownModel(NotFound, message="model not found"):
    def __init__(self, model: str) -> None:
        super().__init__(f"model '{echo(model)}' is not served here", param="model",
                         code="model_not_found")


class MethodNotAllowed(ClientError, status=405, message="method not allowed"):
    pass


class RequestTimeout(ClientError, status=408, message="the request did not arrive in time"):
    pass


class PayloadTooLarge(ClientError, status=413, message="request body too large"):
    pass


class RateLimited(ClientError, status=429, error_type="rate_limit_error", message="rate limited"):
    pass


class ClientClosed(ClientError, status=499, message="the client closed the connection"):
    """The caller closed its connection before the answer was ready (nginx's 499)."""


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


class NoProviderAvailable(RouterError, status=503, error_type="service_unavailable",
                          message="no provider is available for this model"):
    pass


class StateUnavailable(RouterError, status=503, error_type="service_unavailable",
                       message="the response store is unavailable; try again"):
    """The shared state store (Redis) could not be read."""


class UpstreamError(RouterError, status=502, error_type="upstream_error",
                    message="the provider failed"):
    """The provider failed; ``failover`` says whether another may try."""

    #: Another provider may be tried, and this one cooled down.
    failover: ClassVar[bool] = True

    def __init_subclass__(cls, *, failover: bool | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if failover is not None:
            cls.failover = failover


class UpstreamConnectError(UpstreamError, message="could not connect to the provider"):
    pass


class UpstreamTimeout(UpstreamError, status=504, error_type="timeout",
                      message="the provider did not answer in time"):
    pass


class DeadlineExceeded(UpstreamTimeout, failover=False,
                       message="no provider answered within the first-byte deadline"):
    """``LLM_ROUTER_FIRST_BYTE_DEADLINE`` passed: no more attempts, and no provider is to
    blame (none is cooled down)."""


class UpstreamServerError(UpstreamError, message="the provider answered with a server error"):
    pass


class UpstreamRejected(UpstreamError, message="provider rejected the request"):
    pass


class UpstreamRateLimited(UpstreamError, status=429, error_type="rate_limit_error",
                          message="the provider is rate limiting"):
    pass


class UpstreamProtocolError(UpstreamError,
                            message="the provider sent an answer that could not be read"):
    pass


class UpstreamTruncated(UpstreamProtocolError, message="the provider ended the stream early"):
    """The upstream closed a stream cleanly but before its last event (``[DONE]``, Ollama's
    ``done`` line, Anthropic's ``message_stop``): the answer is incomplete. A connection that
    broke mid-stream is an ``UpstreamConnectError`` instead (the transport sees it)."""


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
