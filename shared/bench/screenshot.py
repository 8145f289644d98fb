"""A screenshot of the live dashboard in headless Chromium, when both the binary and the route exist."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1400"]


def dashboard_screenshot(base_url: str, api_key: str, out_dir: Path, budget_ms: int = 5000) -> dict[str, Any]:
    binary = shutil.which("chromium")
    if binary is None:
        return {"skipped": "no chromium binary"}
    try:
        resp = requests.get(f"{base_url}/dashboard", timeout=5)
    except requests.RequestException as exc:
        return {"skipped": f"/dashboard unreachable ({type(exc).__name__})"}
    if resp.status_code != 200 or "html" not in resp.headers.get("content-type", ""):
        return {"skipped": f"/dashboard answered {resp.status_code} {resp.headers.get('content-type', '')}"}
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "dashboard.png"
    with tempfile.TemporaryDirectory(prefix="kisgw-chromium-") as profile:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               f"--virtual-time-budget={budget_ms}", f"--screenshot={shot}",
                               f"{base_url}/dashboard?key={api_key}"],
                              capture_output=True, text=True, timeout=90, check=False)
    if done.returncode != 0 or not shot.exists():
        return {"error": f"chromium exited {done.returncode}"}
    return {"path": str(shot), "bytes": shot.stat().st_size}
