"""Simulator fixtures: a started SimServer per test (free port), a small KIS client, a session clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from shared.clock import FakeClock
from shared.sim import SimConfig, SimServer

KST = timezone(timedelta(hours=9))
# Wednesday 13 May 2026, 10:30 KST: inside the regular session
SESSION_TS = datetime(2026, 5, 13, 10, 30, tzinfo=KST).timestamp()
PRICE = "/uapi/domestic-stock/v1/quotations/inquire-price"
MULTI = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
INDEX = "/uapi/domestic-stock/v1/quotations/inquire-index-price"
DAILY = "/uapi/domestic-stock/v1/quotations/inquire-daily-price"
CHART = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
INFO = "/uapi/domestic-stock/v1/quotations/search-stock-info"
ORDER = "/uapi/domestic-stock/v1/trading/order-cash"
BALANCE = "/uapi/domestic-stock/v1/trading/inquire-balance"


class Kis:
    """Just enough of a KIS client to drive the simulator over real HTTP."""

    def __init__(self, sim: SimServer, app_key: str = "test-app-key", app_secret: str = "test-app-secret") -> None:
        self.base = sim.base_url
        self.app_key = app_key
        self.app_secret = app_secret
        self.http = requests.Session()
        self.token = ""

    def issue(self, **extra) -> requests.Response:
        body = {"grant_type": "client_credentials", "appkey": self.app_key, "appsecret": self.app_secret, **extra}
        return self.http.post(self.base + "/oauth2/tokenP", json=body, timeout=5)

    def login(self) -> Kis:
        resp = self.issue()
        assert resp.status_code == 200, resp.text
        self.token = resp.json()["access_token"]
        return self

    def headers(self, tr_id: str, tr_cont: str = "", **override: str) -> dict[str, str]:
        h = {"content-type": "application/json; charset=utf-8", "authorization": f"Bearer {self.token}",
             "appkey": self.app_key, "appsecret": self.app_secret, "tr_id": tr_id, "tr_cont": tr_cont,
             "custtype": "P"}
        h.update(override)
        return {k: v for k, v in h.items() if v is not None}

    def get(self, path: str, tr_id: str, params: dict[str, str], tr_cont: str = "", timeout: float = 5,
            **override: str) -> requests.Response:
        return self.http.get(self.base + path, params=params, headers=self.headers(tr_id, tr_cont, **override),
                             timeout=timeout)

    def post(self, path: str, tr_id: str, body: dict, **override: str) -> requests.Response:
        return self.http.post(self.base + path, json=body, headers=self.headers(tr_id, **override), timeout=5)

    def price(self, code: str, **kw) -> requests.Response:
        return self.get(PRICE, "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": code}, **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SESSION_TS)


@pytest.fixture
def make_sim(port):
    """make_sim(clock=None, **SimConfig fields) -> a started simulator; the first one gets the test's port."""
    started: list[SimServer] = []

    def make(clock: FakeClock | None = None, **cfg) -> SimServer:
        sim = SimServer(SimConfig(**cfg), port=0 if started else port, clock=clock).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim, clock) -> SimServer:
    return make_sim(clock=clock)


@pytest.fixture
def kis(sim) -> Kis:
    return Kis(sim).login()
