"""The client against the KIS simulator over real loopback HTTP: no mocked transport.

Covers a successful call of every endpoint and every error class the client maps: rate limit
(EGW00201/EGW00215), token expired/invalid, token-issue throttle (EGW00133), configuration (EGW00103,
EGW00105, EGW02004, TR not on paper), server and transport failures, and business answers.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal

import pytest

from shared.config import load_settings
from shared.kis.client import KISClient
from shared.kis.errors import (
    KISConfigError,
    KISOrderRejectedError,
    KISRateLimitError,
    KISServerError,
    KISTimeoutError,
    KISTokenExpiredError,
    KISTokenInvalidError,
    KISTokenIssueThrottledError,
    KISTransportError,
    KISUnknownSymbolError,
)
from shared.kis.models import CallRecord

sim_mod = pytest.importorskip("shared.sim")
SimConfig, SimServer = sim_mod.SimConfig, sim_mod.SimServer

ACCOUNT = "5000123401"
UNKNOWN = "ZZZZZZ"  # well-formed, never listed


class Harness:
    def __init__(self) -> None:
        self.sims: list = []
        self.clients: list[KISClient] = []

    def sim(self, **cfg) -> SimServer:
        server = SimServer(SimConfig(seed=1, **cfg), port=0).start()
        self.sims.append(server)
        return server

    def client(self, sim, *, env: str = "real", key: str | None = None, secret: str | None = None,
               timeout_s: float = 3.0, **kw) -> KISClient:
        settings = load_settings(
            {}, kis_env=env, kis_base_url=sim.base_url, kis_app_key=key or "PS" + uuid.uuid4().hex[:34],
            kis_app_secret=secret or "secret-" + uuid.uuid4().hex, kis_account_no=ACCOUNT,
            kis_http_timeout_s=timeout_s, kis_limit_profile=sim.cfg.profile)
        client = KISClient(settings, **kw)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for s in self.sims:
            s.stop()


@pytest.fixture
def kis() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


# ---- success on every endpoint --------------------------------------------------------------

def test_every_endpoint_round_trip_with_gate_and_observer(kis):
    sim = kis.sim(env="real")
    gated: list[tuple[str, str]] = []
    records: list[CallRecord] = []
    client = kis.client(sim, gate=lambda cc, tr: gated.append((cc, tr)), observer=records.append)

    quote = client.get_current_price("005930")
    assert quote.price > 0 and quote.prev_close == quote.price - quote.change
    assert quote.low <= quote.price <= quote.high and quote.lower_limit < quote.price < quote.upper_limit

    multi = client.get_multi_quotes(["005930", "000660", UNKNOWN])
    assert set(multi) == {"005930", "000660"}  # the unknown code is simply absent
    assert multi["000660"].name == "SK하이닉스"

    indices = client.get_index_prices(["0001", "1001", "2001"])
    assert set(indices) == {"0001", "1001", "2001"} and all(i.value > 0 for i in indices.values())

    daily = client.get_daily_prices("005930")
    assert len(daily) == 30 and daily == sorted(daily, key=lambda b: b.date)

    start, end = date(2024, 1, 1), date(2025, 6, 30)
    bars = client.get_period_ohlcv("005930", start, end)
    assert bars[0].date >= start and bars[-1].date <= end
    assert len({b.date for b in bars}) == len(bars) > 300
    period_calls = sim.stats()["calls"]["FHKST03010100"]
    assert period_calls == math.ceil((len(bars) + 1) / 100)  # pages of 100, the last one short

    info = client.get_stock_info("005930")
    assert info.name == "삼성전자" and info.listed_shares > 0 and info.market

    balance = client.get_balance()
    assert len(balance.positions) == 65  # two pages of 50 on the real host
    assert sim.stats()["calls"]["TTTC8434R"] == 2
    assert balance.totals.eval_total == sum(p.eval_amount for p in balance.positions)

    order = client.place_cash_order("buy", "005930", 1, "limit", quote.price)
    assert order.order_no and order.org_no and order.time is not None
    assert client.hashkey({"PDNO": "005930"})

    stats = sim.stats()
    assert stats["oauth"]["tokenP"] == 1  # the standalone client issued once and reused the token
    assert len(gated) == stats["total_calls"]  # every REST call (hashkey included) went through the gate
    assert ("orders", "hashkey") in gated and ("quotes", "FHKST11300006") in gated
    assert ("reference", "CTPF1002R") in gated and ("orders", "TTTC0012U") in gated
    assert len(records) == stats["total_calls"] + 1  # + the token issue
    assert all(r.ok and r.status == 200 for r in records)


def test_current_prices_batches_on_real(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim)
    symbols = [s["code"] for s in sim.symbols()][:45]
    out = client.get_current_prices(symbols)
    assert set(out) == set(symbols)
    assert sim.stats()["calls"] == {"FHKST11300006": 3}  # batch_size 20: 20 + 20 + 5


def test_paper_host_single_quotes_and_v_prefixed_order(kis):
    sim = kis.sim(env="paper", profile="kis-legacy")  # 2 calls/s on paper
    client = kis.client(sim, env="paper")
    out = client.get_current_prices(["005930", "000660"])
    assert set(out) == {"005930", "000660"}
    assert sim.stats()["calls"] == {"FHKST01010100": 2}


# ---- rate limits ------------------------------------------------------------------------------

def test_burst_above_the_limit_gets_egw00201(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim, token_provider=None)
    client.issue_token()
    errors = []
    for _ in range(200):  # stops at the first refusal; 19 quick loopback calls are normally enough
        try:
            client.get_current_price("005930")
        except KISRateLimitError as exc:
            errors.append(exc)
            break
    assert errors, "back-to-back calls should exceed 18/s"
    error = errors[0]
    assert error.msg_cd == "EGW00201" and error.http_status == 500 and error.retryable and not error.ledger


def test_ledger_limit_is_egw00215(kis):
    sim = kis.sim(env="real", ledger_tps=1, positions=3)
    client = kis.client(sim)
    client.get_balance()
    with pytest.raises(KISRateLimitError) as info:
        client.get_balance()
    assert info.value.ledger and info.value.msg_cd == "EGW00215"


# ---- tokens ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 200])
def test_expired_token_then_throttled_reissue(kis, status):
    sim = kis.sim(env="real", token_status_expired=status)
    client = kis.client(sim)  # standalone: issues on first need
    client.get_current_price("005930")
    sim.expire_tokens()
    with pytest.raises(KISTokenExpiredError) as info:
        client.get_current_price("005930")
    assert info.value.msg_cd == "EGW00123" and info.value.http_status == status
    # the client forgot the token; KIS allows one issue per minute, so the re-issue is refused
    with pytest.raises(KISTokenIssueThrottledError) as info:
        client.get_current_price("005930")
    assert info.value.msg_cd == "EGW00133" and info.value.http_status == 403
    stats = sim.stats()
    assert stats["calls"]["FHKST01010100"] == 1 and stats["refused"]["EGW00123"] == 1
    assert stats["refused"]["EGW00133"] == 1  # the refused issue; no REST call followed it


def test_token_issue_twice_in_a_minute_is_throttled(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim)
    token = client.issue_token()
    assert token.expires_at.utcoffset().total_seconds() == 9 * 3600
    assert token.value not in repr(token)
    with pytest.raises(KISTokenIssueThrottledError):
        client.issue_token()


def test_invalid_token_and_revoked_token(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim, token_provider=lambda: "not-a-token")
    with pytest.raises(KISTokenInvalidError) as info:
        client.get_current_price("005930")
    assert info.value.msg_cd == "EGW00121"

    holder: dict[str, str] = {}
    client = kis.client(sim, token_provider=lambda: holder["token"])
    holder["token"] = client.issue_token().value
    client.get_current_price("005930")
    client.revoke_token(holder["token"])
    with pytest.raises(KISTokenInvalidError):
        client.get_current_price("005930")


# ---- configuration -------------------------------------------------------------------------------

def test_unknown_app_key_wrong_secret_and_paper_key_on_real(kis):
    key, secret, paper_key = "PSreal" + "a" * 30, "s" * 180, "PSpaper" + "b" * 29
    sim = kis.sim(env="real", apps={key: (secret, "real"), paper_key: (secret, "paper")})
    with pytest.raises(KISConfigError) as info:
        kis.client(sim, key="PSunknown" + "c" * 27, secret=secret).issue_token()
    assert info.value.msg_cd == "EGW00103" and info.value.http_status == 403
    with pytest.raises(KISConfigError) as info:
        kis.client(sim, key=key, secret="wrong").issue_token()
    assert info.value.msg_cd == "EGW00105"
    with pytest.raises(KISConfigError) as info:
        kis.client(sim, key=paper_key, secret=secret).issue_token()
    assert info.value.msg_cd == "EGW02004"
    good = kis.client(sim, key=key, secret=secret)
    assert good.get_current_price("005930").price > 0
    text = str(info.value) + repr(info.value)
    assert secret not in text and paper_key not in text


@pytest.mark.parametrize("call", [
    lambda c: c.get_multi_quotes(["005930"]),
    lambda c: c.get_stock_info("005930"),
    lambda c: c.get_index_price("0001"),
])
def test_real_only_trs_on_paper_are_config_errors(kis, call: Callable[[KISClient], object]):
    sim = kis.sim(env="paper")
    client = kis.client(sim, env="paper")
    with pytest.raises(KISConfigError) as info:
        call(client)
    assert "is not offered to paper-trading keys" in info.value.msg1
    stats = sim.stats()  # refused before the call: KIS never sees it (no token either)
    assert stats["total_calls"] == 0 and stats["total_refused"] == 0 and stats["tokens_issued"] == 0


# ---- server and transport ------------------------------------------------------------------------

def test_injected_5xx_and_down_are_server_errors(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim)
    client.issue_token()
    sim.set_faults(error_rate=1.0)
    for _ in range(4):  # the sim answers EGW00001 or a blank 500 at random
        with pytest.raises(KISServerError) as info:
            client.get_current_price("005930")
        assert info.value.http_status == 500 and info.value.retryable
    sim.set_faults(error_rate=0.0, down=True)
    with pytest.raises(KISServerError):
        client.get_index_price("0001")


def test_dropped_connection_is_transport_error(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim)
    client.issue_token()
    sim.set_faults(down=True, down_mode="close")
    with pytest.raises(KISTransportError) as info:
        client.get_current_price("005930")
    assert not isinstance(info.value, KISTimeoutError) and info.value.sent is True


def test_order_timeout_is_unknown_outcome_sent_once(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim, timeout_s=0.3)
    client.issue_token()
    sim.set_faults(timeout_rate=1.0, timeout_hold_s=1.0)
    with pytest.raises(KISTimeoutError) as info:
        client.place_cash_order("buy", "005930", 1, "market", None)
    assert info.value.sent is True
    assert sim.stats()["calls"].get("TTTC0012U") == 1  # reached KIS once, never resent


def test_connection_refused_is_not_sent(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim, token_provider=lambda: "t")
    sim.stop()
    with pytest.raises(KISTransportError) as info:
        client.place_cash_order("sell", "005930", 1, "market", None)
    assert info.value.sent is False and not isinstance(info.value, KISTimeoutError)


# ---- business answers -------------------------------------------------------------------------------

def test_unknown_symbol_on_every_single_symbol_tr(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim)
    for call in (client.get_current_price, client.get_daily_prices, client.get_stock_info,
                 lambda s: client.get_period_ohlcv(s, date(2025, 1, 1), date(2025, 3, 1))):
        with pytest.raises(KISUnknownSymbolError) as info:
            call(UNKNOWN)
        assert info.value.symbol == UNKNOWN and not info.value.retryable
    with pytest.raises(KISUnknownSymbolError):
        client.get_index_price("9999")


def test_rejected_orders(kis):
    sim = kis.sim(env="real")
    client = kis.client(sim)
    quote = client.get_current_price("005930")
    with pytest.raises(KISOrderRejectedError) as info:
        client.place_cash_order("buy", "005930", 1, "limit", Decimal(quote.upper_limit) * 2)
    assert info.value.msg_cd == "APBK0406" and info.value.http_status == 200
    with pytest.raises(KISOrderRejectedError) as info:
        client.place_cash_order("buy", UNKNOWN, 1, "market", None)
    assert info.value.msg_cd == "APBK0656"
    assert sim.stats()["orders"] == 0


def test_debug_logs_carry_no_secret(kis, caplog):
    sim = kis.sim(env="real", positions=3)
    client = kis.client(sim, key="PSlogkey" + "k" * 28, secret="logsecret" + "s" * 100, timeout_s=0.3)
    with caplog.at_level("DEBUG"):
        token = client.issue_token().value
        client.get_balance()
        client.place_cash_order("buy", "005930", 1, "market", None)
        sim.set_faults(timeout_rate=1.0, timeout_hold_s=1.0)
        with pytest.raises(KISTimeoutError):
            client.get_balance()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "inquire-balance" in text  # urllib3 did log the request line
    for secret in (ACCOUNT[:8], token, "PSlogkey" + "k" * 28, "logsecret" + "s" * 100):
        assert secret not in text


def test_cli_prints_domain_values_from_the_sim(kis, capsys, monkeypatch):
    from shared.kis.cli import run

    sim = kis.sim(env="real")
    monkeypatch.setenv("KIS_APP_KEY", "PScli" + "c" * 31)
    monkeypatch.setenv("KIS_APP_SECRET", "clisecret")
    assert run(["--base-url", sim.base_url, "price", "005930", "000660"]) == 0
    out = capsys.readouterr().out
    assert '"005930"' in out and '"price"' in out and "clisecret" not in out
    monkeypatch.setenv("KIS_APP_KEY", "PScli2" + "c" * 30)  # each run issues a token: 1/min per key
    assert run(["--base-url", sim.base_url, "info", UNKNOWN]) == 1
    assert "KISUnknownSymbolError" in capsys.readouterr().out
