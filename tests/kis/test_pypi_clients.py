"""KIS client libraries from PyPI run their price call against the simulator, unchanged.

They live in their own virtualenv (`.tools/kis-clients`, made by scripts/bootstrap.sh with
KISGW_WITH_KIS_CLIENTS=1), never among the gateway's dependencies; without it these tests are skipped.
- python-kis (import pykis) has no base-URL option: its client reads the module constant
  `pykis.kis.REAL_DOMAIN` on each request, so the script sets that to the simulator. Its price call first
  asks search-info (CTPF1604R) and sends no `custtype` header: both had to work on the simulator.
- kis-agent takes `base_url`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_PYTHON = ROOT / ".tools" / "kis-clients" / "bin" / "python"

PYKIS_SCRIPT = """
import sys
import pykis.kis
pykis.kis.REAL_DOMAIN = pykis.kis.VIRTUAL_DOMAIN = sys.argv[1]
from pykis import PyKis
kis = PyKis(id="simuser", account="50000000-01", appkey="PS" + "a" * 34, secretkey="s" * 180, keep_token=False)
quote = kis.stock("005930").quote()
print("PRICE", quote.symbol, quote.name, int(quote.price))
"""

KIS_AGENT_SCRIPT = """
import sys
import uuid
from kis_agent import Agent
agent = Agent(app_key="PS" + uuid.uuid4().hex + "b" * 2, app_secret="t" * 180, account_no="50000000", account_code="01",
              base_url=sys.argv[1])
res = agent.get_stock_price("005930")
print("PRICE", res["rt_cd"], int(res["output"]["stck_prpr"]))
"""


def run_client(module: str, script: str, base_url: str, home: Path) -> str:
    if not TOOLS_PYTHON.exists():
        pytest.skip(f"{module}: no {TOOLS_PYTHON.relative_to(ROOT)}; install with KISGW_WITH_KIS_CLIENTS=1 "
                    "scripts/bootstrap.sh")
    probe = subprocess.run([str(TOOLS_PYTHON), "-c", f"import {module}"], capture_output=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{module} is not installed in .tools/kis-clients: {probe.stderr.decode()[-200:]}")
    # Token files: python-kis under HOME, kis-agent inside its package unless KIS_TOKEN_PATH says otherwise
    # (a token cached by an earlier run would belong to another simulator).
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "NO_PROXY": "*",
           "KIS_TOKEN_PATH": str(home / "KIS_Token.json")}
    done = subprocess.run([str(TOOLS_PYTHON), "-c", script, base_url], capture_output=True, timeout=120, env=env,
                          cwd=str(home))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode()


def test_python_kis_price_call(sim, tmp_path):
    out = run_client("pykis", PYKIS_SCRIPT, sim.base_url, tmp_path)
    line = next(x for x in out.splitlines() if x.startswith("PRICE"))
    _, code, name, price = line.split()
    assert (code, name) == ("005930", "삼성전자") and int(price) > 0
    calls = sim.stats()["calls"]
    assert calls.get("FHKST01010100", 0) >= 1 and calls.get("CTPF1604R", 0) >= 1


def test_kis_agent_price_call(sim, tmp_path):
    out = run_client("kis_agent", KIS_AGENT_SCRIPT, sim.base_url, tmp_path)
    line = next(x for x in out.splitlines() if x.startswith("PRICE"))
    _, rt_cd, price = line.split()
    assert rt_cd == "0" and int(price) > 0
    assert sim.stats()["calls"].get("FHKST01010100", 0) >= 1
