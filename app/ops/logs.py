"""Structured logs: a request id on every line of a request, one JSON object per line if asked."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message", "asctime", "request_id", "taskName"}


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-ID if it is sane (short, no spaces or control chars), else a new one."""
    if header and SANE_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def current_request_id() -> str:
    """The id of the request being served, or '-' outside a request (workers, startup)."""
    if has_request_context():
        return str(g.get("request_id", "-"))
    return "-"


class RequestIdFilter(logging.Filter):
    """Stamps `record.request_id` so that every line of a request carries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def install_logging(log_format: str, level: str | int) -> None:
    """Give the process's console log handler the request id, and JSON lines if configured.

    Only plain StreamHandlers (as logging.basicConfig makes) are reconfigured; handlers that test
    runners or embedding applications installed are left alone. Idempotent: several apps in one
    process share the one console handler.
    """
    root = logging.getLogger()
    consoles = [handler for handler in root.handlers if type(handler) is logging.StreamHandler]
    if not root.handlers:
        consoles = [logging.StreamHandler(sys.stderr)]
        root.addHandler(consoles[0])
        root.setLevel(level)
    for handler in consoles:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        handler.setFormatter(JsonFormatter() if log_format == "json" else
                             logging.Formatter(TEXT_FORMAT))
    # APScheduler logs every job it adds and every tick (heartbeats every few seconds) at INFO;
    # what termsync schedules it logs itself.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
