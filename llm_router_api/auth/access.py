"""Who may call an endpoint: each endpoint class declares one ``Access`` level."""

from __future__ import annotations

from enum import Enum


class Access(str, Enum):
    #: Every model call: an API key when keys are configured.
    KEY = "key"
    #: Health, model lists, metrics: open unless ``LLM_ROUTER_PROTECT_INFO_ENDPOINTS``.
    INFO = "info"
    #: Liveness, version, ``GET /``: always open.
    OPEN = "open"
    #: Guarded by the admin token, which the endpoint checks itself (not a caller key).
    ADMIN = "admin"
