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

# Values that must never reach a log line even if a careless message includes them: KIS credentials and
# tokens, account numbers, our API keys, webhook/Redis credentials — as `k=v`, `k: v`, JSON (`"k": "v"`,
# escaped or not) and Python reprs (`'k': 'v'`).
SECRET_FIELD_NAMES = (
    "appkey", "appsecret", "app_key", "app_secret", "kis_app_key", "kis_app_secret", "secretkey", "secret_key",
    "access_token", "refresh_token", "token", "approval_key", "authorization", "proxy-authorization",
    "cano", "acnt_no", "account_no", "kis_account_no", "acnt_prdt_cd", "x-api-key", "api_key", "apikey",
    "api_key_pepper", "pepper", "password", "passwd", "auth_string", "dev_api_key", "gateway_dev_api_key",
    "alert_webhook_url", "webhook_url", "redis_url", "hashkey",
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]+")
_SECRET_FIELDS = re.compile(
    r"(?i)(?<![A-Za-z0-9_\-])(\\?[\"']?(?:" + "|".join(re.escape(n) for n in SECRET_FIELD_NAMES) + r")\\?[\"']?"
    r"\s*[:=]\s*)"  # the name, quoted or not, and its separator
    r"(?:\\?\"(?:[^\"\\]|\\(?!\"))*\\?\"|'[^']*'|[^\s,;&}\]\)'\"{\[]+)")  # a quoted or bare value
_API_KEY = re.compile(r"\b(kgw_[0-9a-f]{12}_)[A-Za-z0-9_\-]+")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@")
_ACCOUNT = re.compile(r"(?<!\d)\d{8}-\d{2}(?!\d)")
_MIN_KNOWN = 6
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Scrub this exact value wherever it shows up (the gateway registers its app key, app secret, account
    number and token at start-up). Values shorter than 6 characters are ignored (they would mask noise)."""
    global _known_pattern
    value = (value or "").strip()
    if len(value) < _MIN_KNOWN or value in _known:
        return
    _known.add(value)
    _known_pattern = re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


def scrub(text: str) -> str:
    text = _BEARER.sub(r"\1***", text)
    text = _SECRET_FIELDS.sub(r"\1***", text)
    text = _API_KEY.sub(r"\1***", text)
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _ACCOUNT.sub("********-**", text)
    known = _known_pattern
    if known is not None:
        text = known.sub("***", text)
    return text


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
