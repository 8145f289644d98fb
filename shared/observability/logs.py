"""Structured JSON logs in Cloud Logging's format, each line carrying the request id.

Cloud Logging reads `severity`, `message`, `time` and `logging.googleapis.com/trace` from JSON on stdout.
The request id comes from a context variable set per HTTP request (or per Cloud Tasks push), so a quote
request, the drain task it caused and the KIS call that task made can be followed by one id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Values that must never reach a log line even if a careless message includes them.
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+")
_SECRET_FIELDS = re.compile(r'(?i)("?(?:appkey|appsecret|secretkey|access_token|authorization|cano|x-api-key)"?\s*'
                            r'[:=]\s*"?)([^",}\s]+)')


def scrub(text: str) -> str:
    return _SECRET_FIELDS.sub(r"\1***", _BEARER.sub(r"\1***", text))


class CloudJSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry = {
            "severity": record.levelname if record.levelname != "WARNING" else "WARNING",
            "message": scrub(message),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "logger": record.name,
            "logging.googleapis.com/labels": {"request_id": request_id.get() or "-"},
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key in ("alert", "kind", "tr_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int = logging.INFO) -> None:
    """Install the JSON formatter on the root logger once per process."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudJSONFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudJSONFormatter())
    root.addHandler(handler)
    root.setLevel(level)  # INFO: urllib3's DEBUG request lines (URLs) stay out unless asked for
