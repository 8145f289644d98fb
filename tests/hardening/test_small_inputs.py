"""Deep JSON, oversized bodies, request ids and the deadline cap: each a clear 4xx, never a 500."""

from __future__ import annotations

import io

import pytest
from flask import Flask, request

import shared.gateway as gateway_mod
from shared.api.serve import serve
from shared.api.validation import MAX_BODY_BYTES


@pytest.fixture
def client(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="dev-key-small", INBOUND_RATE_PER_KEY="1000",
                      GATEWAY_MAX_DEADLINE_MS="3000")
    gateway_mod.set_gateway(gw)
    app = Flask(__name__)

    @app.route("/<path:_>", methods=["GET", "POST"])
    def view(_):
        return serve(request)

    yield app.test_client()
    gateway_mod.set_gateway(None)


H = {"X-API-Key": "dev-key-small"}


def test_deeply_nested_json_is_400(client):
    for depth in (40, 8000):  # 8000 levels fit the body limit and exceed the JSON parser's recursion
        body = "[" * depth + "]" * depth
        resp = client.post("/api/market-data/snapshot", data=body, headers=H, content_type="application/json")
        assert resp.status_code == 400, resp.get_data(True)[:200]
        assert "nested" in resp.get_json()["error"]["message"] or "JSON" in resp.get_json()["error"]["message"]


def test_oversized_body_is_413_by_its_length_and_when_chunked(client):
    big = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
    resp = client.post("/api/market-data/snapshot", data=big, headers=H, content_type="application/json")
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "too_large"

    # No Content-Length (chunked): the stream stops at the limit instead of reading 64 KiB.
    stream = io.BytesIO(b'{"stock_code": "' + b"0" * 65536 + b'"}')
    resp = client.post("/api/market-data/snapshot", input_stream=stream, headers={**H, "Transfer-Encoding": "chunked"},
                       content_type="application/json", environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413
    assert stream.tell() <= MAX_BODY_BYTES + 64 * 1024  # (read in chunks; never the whole body at once)


@pytest.mark.parametrize("rid, kept", [("abc-123_x.y:z", True), ("a" * 128, True), ("a" * 129, False),
                                       ("bad id", False), ("a\tb;c=d", False), ("é-id", False), ("<script>", False),
                                       ("", False)])
def test_request_id_is_echoed_only_when_safe(client, rid, kept):
    resp = client.get("/health", headers={"X-Request-Id": rid} if rid else {})
    echoed = resp.headers["X-Request-Id"]
    assert (echoed == rid) is kept
    if not kept:
        assert len(echoed) == 32 and echoed.isalnum()


def test_deadline_is_capped_by_the_setting(client):
    over = client.get("/v1/quotes?symbols=005930&deadline_ms=3001", headers=H)
    assert over.status_code == 400 and "3000" in over.get_json()["error"]["message"]
    assert client.get("/v1/quotes?symbols=005930&deadline_ms=3000", headers=H).status_code == 200
