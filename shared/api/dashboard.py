"""The live dashboard: one self-contained HTML page (styles and script inlined, no CDN) and its JSON feed.

`dashboard` is public: the page holds no data and no key. The browser sends the API key (typed into the
page's input box, or handed over once in the URL fragment `#key=`, which browsers never send; kept in
sessionStorage) as the X-API-Key header on every poll of `dashboard_feed` (admin scope, like /stats) and of
/v1/quotes (market:read). A key in the query string (`?key=`) is refused: request logs would keep it.
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Request

from shared.api.errors import ApiError
from shared.observability.metrics import cache_hit_ratio

if TYPE_CHECKING:
    from shared.api.parts import Gateway

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
Reply = tuple[Any, int]
FEED_SUFFIX = "/feed"


@lru_cache(maxsize=1)
def _template() -> str:
    page = (ASSETS / "index.html").read_text(encoding="utf-8")
    css = (ASSETS / "dashboard.css").read_text(encoding="utf-8")
    js = (ASSETS / "dashboard.js").read_text(encoding="utf-8")
    if "</script" in js.lower() or "</style" in css.lower():
        raise ValueError("dashboard assets must not close their own inline tags")
    return page.replace("/*CSS*/", css, 1).replace("/*JS*/", js, 1)


def page_html(feed_url: str = "/dashboard/feed", quotes_url: str = "/v1/quotes") -> str:
    """The page, told where its feed and the quotes route are (relative to this origin)."""
    attrs = f'<body data-feed-url="{html.escape(feed_url)}" data-quotes-url="{html.escape(quotes_url)}" '
    return _template().replace("<body ", attrs, 1)


def dashboard(gw: Gateway, request: Request) -> Reply:
    """GET /dashboard: the page. Served as text/html (see serve())."""
    for name in request.args:
        if name.lower() in ("key", "api_key", "apikey", "x-api-key"):
            raise ApiError(400, "an API key does not belong in a URL (request logs keep URLs): open the page "
                                "without it and type the key into the page, or hand it over as #key=...",
                           field=name[:20])
    base = request.path.rstrip("/") or "/dashboard"
    return page_html(base + FEED_SUFFIX), 200


def dashboard_feed(gw: Gateway, request: Request) -> Reply:
    """GET /dashboard/feed: what the page draws, read now. Fleet-wide figures come from Redis (limiter
    log, pending sets, breaker); counters and latencies are this instance's."""
    return feed(gw), 200


def feed(gw: Gateway) -> dict[str, Any]:
    from shared.api import fleet, status

    s = gw.settings
    m = fleet.view(gw)  # every function process's figures
    st = status.read(gw)
    out: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "epoch": time.time()}
    kis: dict[str, Any] = {"limit": s.kis_limit, "budget": s.budget, "effective_budget": float(s.budget),
                           "last_second": None, "by_class": {}, "calls_total": m.total("kis_calls_total"),
                           "by_outcome": m.by_label("kis_calls_total", "outcome"),
                           "by_tr_id": m.by_label("kis_calls_total", "tr_id")}
    if st.limiter is not None:
        kis["effective_budget"] = st.limiter["effective_budget"]
        kis["last_second"] = st.limiter["last_second"]["total"]
        kis["by_class"] = {k: v for k, v in st.limiter["last_second"].items() if k != "total"}
        out["limiter_waits"] = st.limiter["waits"]
    out["queue_depth"] = st.queue_depth
    out["redis"] = st.redis
    out["kis"] = kis
    out["cache"] = {"fresh": m.value("symbol_results_total", kind="quote", status="fresh"),
                    "total": m.total("symbol_results_total", kind="quote"), "hit_ratio": cache_hit_ratio(m)}
    out["breaker"] = st.breaker
    out["token"] = st.token
    lat = m.histogram("request_seconds", kind="quote")
    out["latency"] = {"count": lat.n if lat else 0, "p50_s": lat.quantile(0.5) if lat else None,
                      "p95_s": lat.quantile(0.95) if lat else None, "p99_s": lat.quantile(0.99) if lat else None}
    fill = m.histogram("batch_fill", kind="quote")
    out["batch_fill"] = {"batches": fill.n if fill else 0,
                         "mean": round(fill.mean() or 0.0, 2) if fill and fill.n else None}
    out["alerts"] = gw.alerts.recent()[-10:]
    return out
