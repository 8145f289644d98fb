"""The JSON log formatter: Cloud Logging fields, the request id, and secrets scrubbed."""

from __future__ import annotations

import json
import logging
import sys

from shared.observability import logs


def _record(msg: str, *args, level: int = logging.INFO, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("shared.test", level, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_entry_has_cloud_logging_fields():
    line = logs.CloudJSONFormatter().format(_record("drained %d symbols", 20, level=logging.WARNING))
    entry = json.loads(line)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "drained 20 symbols"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert entry["logger"] == "shared.test"
    assert entry["logging.googleapis.com/labels"] == {"request_id": "-"}
    assert "request_id" not in entry


def test_request_id_from_the_context_is_on_every_line():
    token = logs.request_id.set("req-42")
    try:
        entry = json.loads(logs.CloudJSONFormatter().format(_record("x", alert="breaker_open", tr_id="FHKST11300006")))
    finally:
        logs.request_id.reset(token)
    assert entry["request_id"] == "req-42"
    assert entry["logging.googleapis.com/labels"]["request_id"] == "req-42"
    assert entry["alert"] == "breaker_open" and entry["tr_id"] == "FHKST11300006"


def test_secrets_are_scrubbed_from_messages_and_tracebacks():
    secret_msg = ('headers {"appkey": "PSabcdef123", "appsecret": "zzSECRETzz", "authorization": "Bearer tok.en.x"} '
                  "CANO=50123456 x-api-key: kk-live-999")
    try:
        raise ValueError("Authorization: Bearer leaked.jwt.value")
    except ValueError:
        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, secret_msg, (), sys.exc_info())
    line = logs.CloudJSONFormatter().format(rec)
    for leaked in ("PSabcdef123", "zzSECRETzz", "tok.en.x", "50123456", "kk-live-999", "leaked.jwt.value"):
        assert leaked not in line
    entry = json.loads(line)
    assert entry["severity"] == "ERROR" and "Traceback" in entry["message"] and "***" in entry["message"]


def test_non_ascii_messages_stay_readable():
    entry = json.loads(logs.CloudJSONFormatter().format(_record("삼성전자 %s", "005930")))
    assert entry["message"] == "삼성전자 005930"
