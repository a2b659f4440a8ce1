"""Logs: one JSON object per line on stderr, or one readable line on a terminal, tagged with
the request's id, with anything that looks like a token blanked out before it is written.

``configure_logging`` sets up the root logger once per process and routes uvicorn's loggers
through it. Each line made while an HTTP request runs carries the request's id (given by
``RequestIdMiddleware`` in web/middleware.py).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "log_format_for",
    "redact",
]

LogFormat = Literal["auto", "json", "text"]

REDACTED = "[redacted]"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# A bearer JWT (base64url JSON header, always "eyJ…") or a latchkey refresh token.
_SECRET = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|lkrt\.[A-Za-z0-9_-]+")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# (color_message is uvicorn's ANSI-coloured duplicate of msg.)
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

# Set by the HTTP middleware (web/middleware.py) for the time a request runs.
request_id_var: ContextVar[str | None] = ContextVar("latchkey_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the HTTP request being handled, or None outside a request."""
    return request_id_var.get()


def redact(text: str) -> str:
    """``text`` with every JWT-shaped or ``lkrt.`` token replaced by ``[redacted]``."""
    return _SECRET.sub(REDACTED, text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


class RedactingFilter(logging.Filter):
    """Blanks tokens out of the message and the string ``extra=`` fields of every record.

    Defence in depth: latchkey never logs a token on purpose. The formatters redact their
    whole output again, which also covers exceptions and nested values."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the pieces, never let logging raise here
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exception(record: logging.LogRecord) -> str | None:
    """``Type: message`` of the logged exception: no traceback, no locals."""
    if not record.exc_info or record.exc_info[1] is None:
        return None
    exc = record.exc_info[1]
    return f"{type(exc).__qualname__}: {exc}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in _extras(record).items():
            line.setdefault(key, value)  # an extra never overwrites a standard key
        exc = _exception(record)
        if exc is not None:
            line["exc"] = exc
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: msg key=value …`` for a developer's terminal (with tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"]
        request_id = current_request_id()
        if request_id is not None:
            parts.append(f"request_id={request_id}")
        parts.extend(f"{key}={value}" for key, value in _extras(record).items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


def log_format_for(fmt: LogFormat, stream: TextIO) -> Literal["json", "text"]:
    """``auto`` is ``text`` when ``stream`` is a terminal, where a person reads it, and
    ``json`` otherwise (a file, a pipe, the journal), where a program does."""
    if fmt != "auto":
        return fmt
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "json"


def configure_logging(
    level: str,
    fmt: LogFormat = "json",
    *,
    stream: TextIO | None = None,
    access_log: bool = False,
) -> logging.Handler:
    """Send every log record of the process, uvicorn's included, to one redacting handler on
    ``stream`` (stderr), in ``fmt`` (see :func:`log_format_for`). Replaces the root logger's
    handlers, as ``basicConfig(force=True)`` does; calling it again is safe.

    uvicorn's access log (one line per request) is written only with ``access_log``
    (LATCHKEY_ACCESS_LOG) and a level of ``info`` or lower: formatting and writing that line
    took about 7 % of a worker's time on ``/auth/me`` (docs/performance.md). Off, uvicorn's
    call returns at its first level check."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    json_lines = log_format_for(fmt, out) == "json"
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(RedactingFilter())

    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())

    # uvicorn installs its own handlers (and stops propagation) from its log_config; undo that
    # so its lines, the access log included, come out in the same format.
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for old in logger.handlers[:]:
            logger.removeHandler(old)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level, as set above
    if not access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    return handler
