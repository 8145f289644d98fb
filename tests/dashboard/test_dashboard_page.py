"""The page and its feed over the real serve() and access checks (Flask test client, no browser)."""

from __future__ import annotations

import re

from tests.dashboard.conftest import DEV_KEY


def test_page_is_public_self_contained_html(client):
    resp = client.get("/dashboard")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "<canvas id=\"chart-kis\"" in page and "function draw(" in page and ".card {" in page
    assert "/*JS*/" not in page and "/*CSS*/" not in page
    # No CDN, no external fonts or scripts: every URL the page names is relative to this origin.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert 'data-feed-url="/dashboard/feed"' in page and 'data-quotes-url="/v1/quotes"' in page
    assert DEV_KEY not in page


def test_feed_needs_an_admin_key(client):
    assert client.get("/dashboard/feed").status_code == 401
    assert client.get("/dashboard/feed", headers={"X-API-Key": "wrong"}).status_code in (401, 403)
    assert client.post("/dashboard/feed", headers={"X-API-Key": DEV_KEY}).status_code == 405


def test_feed_reports_kis_rate_cache_queue_breaker_and_token(client):
    h = {"X-API-Key": DEV_KEY}
    first = client.get("/v1/quotes?symbols=005930,000660,035420", headers=h).get_json()
    assert {q["status"] for q in first["quotes"].values()} == {"fresh"}
    client.get("/v1/quotes?symbols=005930,000660,035420", headers=h)  # all cache hits now
    f = client.get("/dashboard/feed", headers=h).get_json()
    assert f["kis"]["budget"] == 17 and f["kis"]["limit"] == 18 and f["kis"]["effective_budget"] == 17
    assert f["kis"]["last_second"] >= 1  # the multi-quote call just granted (fleet-wide log in Redis)
    # One token issue and one multi-quote call for three symbols.
    assert f["kis"]["by_outcome"] == {"ok": 2} and f["kis"]["by_tr_id"] == {"tokenP": 1, "FHKST11300006": 1}
    assert f["cache"] == {"fresh": 6, "total": 6, "hit_ratio": 1.0}
    assert f["queue_depth"] == {"quote": 0, "index": 0, "daily": 0, "info": 0}
    assert f["breaker"]["state"] == "closed"
    assert f["token"]["state"] == "valid" and f["token"]["expires_in_s"] > 80_000
    assert f["latency"]["count"] == 2 and f["batch_fill"] == {"batches": 1, "mean": 3.0}
    assert f["alerts"] == []
    assert "appkey" not in str(f).lower() and "PStest" not in str(f)
