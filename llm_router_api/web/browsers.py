"""Browsers from other sites: refused (403) unless their origin is listed; CORS for those listed.

A gateway on localhost or an intranet takes JSON whatever the ``Content-Type`` (so ``curl -d``
works), which also means a web page could make a visitor's browser POST a "simple" cross-site
request to it and spend provider tokens. Browsers say where a request comes from, so:

- ``Sec-Fetch-Site: cross-site``, or an ``Origin`` whose host is not the gateway's own (the
  ``Host`` header, or ``X-Forwarded-Host`` from a reverse proxy, which a browser cannot set on a
  cross-site request without a preflight), is refused with 403 before any other work;
- unless the ``Origin`` is listed in ``LLM_ROUTER_CORS_ORIGINS`` (``*``: any): then the answer
  carries ``Access-Control-Allow-Origin`` and ``Vary: Origin``, and a preflight ``OPTIONS`` gets
  the methods, the headers SDKs send (``Authorization``, ``x-api-key``, ``anthropic-version``,
  ``content-type``, and whatever else the preflight asks for) and a ``max-age``. No
  ``Allow-Credentials``: callers authenticate with headers, never cookies.

Requests without these headers (curl, SDKs, servers) are not affected.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

from flask import Response
from werkzeug.datastructures import Headers

from llm_router_api.errors import Forbidden

ALLOW_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
ALLOW_HEADERS = ("authorization", "content-type", "x-api-key", "anthropic-version",
                 "anthropic-beta", "x-request-id")
EXPOSE_HEADERS = ("X-Request-ID, Retry-After, x-ratelimit-limit-requests, "
                  "x-ratelimit-remaining-requests, x-ratelimit-limit-tokens, "
                  "x-ratelimit-remaining-tokens")
MAX_AGE = "600"
AnyHeaders = Headers | Mapping[str, str]
DEFAULT_PORTS = {"http": "80", "https": "443"}


class BrowserPolicy:
    """Decides per request; built once from ``LLM_ROUTER_CORS_ORIGINS``."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.any_origin = "*" in allowed
        self.allowed = frozenset(_origin_key(origin) for origin in allowed if origin != "*")

    def check(self, headers: AnyHeaders) -> None:
        """Raise ``Forbidden`` for a cross-site browser request from an origin not listed."""
        origin = headers.get("Origin")
        if origin is not None and self.listed(origin):
            return
        cross_site = headers.get("Sec-Fetch-Site", "").lower() == "cross-site"
        if cross_site or (origin is not None and not _same_host(origin, headers)):
            raise Forbidden("cross-site browser requests are refused; list the page's origin in "
                            "LLM_ROUTER_CORS_ORIGINS to allow it", code="cross_site_request")

    def listed(self, origin: str) -> bool:
        return self.any_origin or _origin_key(origin) in self.allowed

    def decorate(self, response: Response, headers: AnyHeaders, method: str) -> None:
        """CORS headers on a Flask answer (``cors_headers``) and ``Vary: Origin``."""
        response.vary.add("Origin")
        response.headers.update(self.cors_headers(headers, method))

    def cors_headers(self, headers: AnyHeaders, method: str) -> dict[str, str]:
        """The CORS headers of the answer to a listed origin (the preflight included); every
        answer also varies by ``Origin``."""
        origin = headers.get("Origin")
        if origin is None or not self.listed(origin):
            return {}
        cors = {"Access-Control-Allow-Origin": origin,
                "Access-Control-Expose-Headers": EXPOSE_HEADERS}
        if method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            asked = headers.get("Access-Control-Request-Headers", "")
            names = dict.fromkeys([*ALLOW_HEADERS, *(h.strip().lower() for h in asked.split(",")
                                                     if h.strip())])
            cors["Access-Control-Allow-Methods"] = ALLOW_METHODS
            cors["Access-Control-Allow-Headers"] = ", ".join(names)
            cors["Access-Control-Max-Age"] = MAX_AGE
        return cors


def _origin_key(origin: str) -> str:
    """``scheme://host:port``, lower-case, with the default port made explicit."""
    parts = urlsplit(origin.strip().lower())
    return f"{parts.scheme}://{parts.hostname or ''}:{_port_of(parts, parts.scheme)}"


def _port_of(parts: SplitResult, scheme: str) -> str | None:
    try:
        port = parts.port
    except ValueError:
        return None
    return str(port or DEFAULT_PORTS.get(scheme, ""))


def _same_host(origin: str, headers: AnyHeaders) -> bool:
    """Whether ``origin`` names the host the request was sent to (``Host`` or a proxy's
    ``X-Forwarded-Host``)."""
    parts = urlsplit(origin.strip().lower())
    port = _port_of(parts, parts.scheme)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return False  # "null" (sandboxed pages, files) and anything odd
    own = [headers.get("Host", ""), *headers.get("X-Forwarded-Host", "").split(",")]
    for host in (h.strip().lower() for h in own if h.strip()):
        given = urlsplit(f"//{host}")
        if (given.hostname, _port_of(given, parts.scheme)) == (parts.hostname, port):
            return True
    return False
