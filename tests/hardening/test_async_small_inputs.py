"""The ASGI functions treat request ids and bodies as `serve` does: an unsafe X-Request-Id is replaced, a body
over the limit is 413 (by its Content-Length, and when chunked) before it is read whole."""

from __future__ import annotations

import pytest

import shared.gateway as gateway_mod
from shared.api.validation import MAX_BODY_BYTES
from tests.entry_points import entry_client

H = {"X-API-Key": "dev-key-async-small"}


@pytest.fixture
def gw(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY=H["X-API-Key"], INBOUND_RATE_PER_KEY="1000")
    gateway_mod.set_gateway(gw)
    yield gw
    gateway_mod.set_gateway(None)


@pytest.mark.parametrize("rid, kept", [("abc-123_x.y:z", True), ("a" * 129, False), ("bad id", False),
                                       ("<script>", False)])
def test_request_id_is_echoed_only_when_safe(gw, rid, kept):
    resp = entry_client("quotes").get("/?symbols=005930&deadline_ms=0", headers={**H, "X-Request-Id": rid})
    echoed = resp.headers["X-Request-Id"]
    assert (echoed == rid) is kept
    if not kept:
        assert len(echoed) == 32 and echoed.isalnum()


def test_oversized_body_is_413_by_its_length_and_when_chunked(gw):
    c = entry_client("legacy_api")
    big = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
    resp = c.post("/api/market-data/snapshot", content=big, headers={**H, "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "too_large"

    def chunks():  # no Content-Length
        for _ in range(8):
            yield b" " * 4096

    resp = c.post("/api/market-data/snapshot", content=chunks(), headers={**H, "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "too_large"
    ok = c.post("/api/market-data/snapshot", content=b'{"stock_code": "005930"}',
                headers={**H, "Content-Type": "application/json"})
    assert ok.status_code == 200, ok.get_data(True)[:200]
