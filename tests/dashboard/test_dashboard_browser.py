"""The dashboard in headless Chromium: it loads, polls with the key, draws charts, fills the watchlist,
and a screenshot is saved. Skipped (with the reason) where no `chromium` binary is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dashboard.conftest import DEV_KEY

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1400"]


def chromium(tmp_path: Path, url: str, *extra: str, budget_ms: int = 6000) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def attr(dom: str, element_id: str, name: str) -> str:
    m = re.search(rf'<[^>]*id="{element_id}"[^>]*>', dom)
    assert m, f"no #{element_id} in the page"
    v = re.search(rf'{name}="([^"]*)"', m.group(0))
    assert v, f"#{element_id} has no {name}"
    return v.group(1)


def text(dom: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert m, f"no #{element_id}"
    return m.group(1)


def test_dashboard_polls_draws_and_fills_the_watchlist(dash_server, dash_gateway, tmp_path):
    url = f"{dash_server}/dashboard?symbols=005930,000660,035420#key={DEV_KEY}"
    done = chromium(tmp_path, url, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    polls = int(re.search(r'<body[^>]*data-polls="(\d+)"', dom).group(1))
    assert polls >= 3, dom[:3000]
    assert re.search(r'<body[^>]*data-feed-errors="0"', dom)
    # Every chart has drawn one point per poll.
    for chart in ("chart-kis", "chart-hits", "chart-queue"):
        assert int(attr(dom, chart, "data-points")) >= 3
    assert text(dom, "conn") == "live"
    assert text(dom, "breaker-state") == "closed" and text(dom, "token-state") == "valid"
    assert text(dom, "kis-budget") == "17" and text(dom, "kis-limit") == "18"
    assert "h" in text(dom, "token-expiry")
    # The watchlist: one row per code with a price, updated on every poll.
    rows = re.findall(r'<tr[^>]*data-symbol="(\w+)"[^>]*>', dom)
    assert rows == ["005930", "000660", "035420"]
    for row in re.findall(r'<tr[^>]*data-symbol="\w+"[^>]*>', dom):
        assert re.search(r'data-price="\d+"', row) and re.search(r'data-status="(fresh|stale)"', row)
        assert int(re.search(r'data-updates="(\d+)"', row).group(1)) >= 3
    assert "삼성전자" in dom
    # The feed the page polled saw its own quote traffic: cache hits after the first fetch.
    assert dash_gateway.metrics.value("symbol_results_total", kind="quote", status="fresh") >= 9
    assert DEV_KEY not in dom  # taken from the fragment into sessionStorage, never written into the page


def test_dashboard_without_a_key_asks_for_one(dash_server, tmp_path):
    done = chromium(tmp_path, f"{dash_server}/dashboard", "--dump-dom", budget_ms=2500)
    assert done.returncode == 0, done.stderr[-2000:]
    assert text(done.stdout, "conn") == "no access"
    assert "enter an API key" in done.stdout
    assert re.search(r'<body[^>]*data-polls="0"', done.stdout)


def test_dashboard_screenshot_is_saved(dash_server, tmp_path):
    shot = tmp_path / "dashboard.png"
    done = chromium(tmp_path, f"{dash_server}/dashboard#key={DEV_KEY}", f"--screenshot={shot}", budget_ms=4000)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"dashboard screenshot: {shot}")
    keep = os.environ.get("DASHBOARD_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
