"""Logging: stderr always, ``LLM_ROUTER_LOG_FILENAME`` too when set, optionally JSON lines.

One access line per request: method, route, model, provider id, status, duration, stream,
request id. Request bodies are never logged, and neither are provider tokens.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from flask import Request, Response

from llm_router_api.settings import Settings

ACCESS = logging.getLogger("llm_router.access")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


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
        root.addHandler(handler)


def access_log(request: Request, response: Response, g: Any) -> None:
    started = g.get("started")
    duration = time.monotonic() - started if started is not None else 0.0
    rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    fields = {
        "method": request.method,
        "route": rule,
        "model": g.get("model", ""),
        "provider": g.get("provider_id", ""),
        "status": response.status_code,
        "duration_ms": round(duration * 1000, 2),
        "stream": response.is_streamed,
        "request_id": g.get("request_id", ""),
    }
    message = " ".join(f"{k}={v}" for k, v in fields.items())
    ACCESS.info(message, extra={"fields": fields})
