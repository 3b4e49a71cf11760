"""Logging: stderr always, ``LLM_ROUTER_LOG_FILENAME`` too when set, optionally JSON lines.

One access line per request (written by ``web.observe`` when the last byte has been sent):
method, route template, model, provider id, status, duration, stream, bytes, request id.
Records logged while a request is being handled carry its request id. Request bodies are never
logged, and neither are provider tokens.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

from flask import g, has_app_context

from llm_router_api.settings import Settings
from llm_router_api.web.exchange import CURRENT

ACCESS = logging.getLogger("llm_router.access")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RequestIdFilter(logging.Filter):
    """Tags records logged inside a request with its id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            exchange = CURRENT.get()
            if exchange is None and has_app_context():
                exchange = g.get("exchange")
            record.request_id = exchange.request_id if exchange is not None else ""
        return True


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger("llm_router")
    root.setLevel(settings.log_level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_filename:
        handlers.append(logging.FileHandler(settings.log_filename))
    formatter = JsonFormatter() if settings.log_json else logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)


def access_log(fields: Mapping[str, Any]) -> None:
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    message = " ".join(f"{k}={v}" for k, v in fields.items())
    ACCESS.info(message, extra={"fields": dict(fields), "request_id": fields.get("request_id")})
