"""Alerter against a real HTTP receiver on loopback: what is sent, when, and that nothing leaks."""

from __future__ import annotations

import logging

from shared.clock import FakeClock
from shared.observability.alerts import Alerter
from shared.observability.metrics import Metrics


def test_breaker_open_posts_one_slack_message_and_suppresses_repeats(webhook):
    clock = FakeClock()
    metrics = Metrics()
    alerter = Alerter(webhook.url, metrics=metrics, clock=clock)

    alerter.breaker_changed("closed", "open")
    alerter.breaker_changed("half-open", "open")  # within the minute: suppressed
    assert alerter.flush()
    bodies = webhook.wait_for(1)
    assert len(bodies) == 1
    assert bodies[0]["event"] == "breaker_open"
    assert bodies[0]["text"].startswith("[kis-gateway] breaker_open")  # Slack shows `text`
    assert bodies[0]["detail"] == {"from": "closed"}

    clock.advance(61)
    alerter.breaker_changed("half-open", "open")
    assert alerter.flush()
    assert webhook.wait_for(2) and webhook.events() == ["breaker_open", "breaker_open"]
    assert metrics.value("alerts_total", event="breaker_open") == 2
    assert metrics.value("breaker_transitions_total", to="open") == 3


def test_breaker_closing_after_an_alerted_open_sends_a_recovery(webhook):
    alerter = Alerter(webhook.url, clock=FakeClock())
    alerter.breaker_changed("half-open", "closed")  # never alerted open: nothing to resolve
    alerter.breaker_changed("closed", "open")
    alerter.breaker_changed("half-open", "closed")
    assert alerter.flush()
    assert webhook.wait_for(2) and webhook.events() == ["breaker_open", "breaker_closed"]


def test_token_failure_alert_scrubs_credentials(webhook):
    alerter = Alerter(webhook.url, clock=FakeClock())
    assert alerter.send("token_refresh_failed",
                        {"reason": "tokenP refused: Authorization: Bearer eyJhbGciOi.abc.def appsecret=topsecret"})
    assert alerter.flush()
    body = webhook.wait_for(1)[0]
    assert body["event"] == "token_refresh_failed"
    text = str(body)
    assert "eyJhbGciOi" not in text and "topsecret" not in text
    assert "***" in body["detail"]["reason"]


def test_rate_errors_alert_only_when_sustained_within_the_window(webhook):
    clock = FakeClock()
    alerter = Alerter(webhook.url, clock=clock, rate_errors=20, rate_window_s=10.0)
    # 19 errors spread over 9 s: not yet sustained.
    for _ in range(19):
        assert not alerter.rate_limited()
        clock.advance(0.5)
    # Errors older than the window fall out: 2 s later only part of them still count.
    clock.advance(2.0)
    assert not alerter.rate_limited()
    assert webhook.bodies == [] and list(alerter.sent) == []
    # A dense burst makes it sustained: exactly one alert, repeats suppressed.
    fired = [alerter.rate_limited() for _ in range(25)]
    assert fired.count(True) == 1
    assert alerter.flush()
    body = webhook.wait_for(1)[0]
    assert body["event"] == "rate_limit_errors" and int(body["detail"]["count"]) >= 20


def test_webhook_failure_is_counted_and_never_logs_the_url(webhook, caplog):
    webhook.status = 500
    metrics = Metrics()
    alerter = Alerter(webhook.url, metrics=metrics, clock=FakeClock())
    with caplog.at_level(logging.WARNING):
        alerter.send("breaker_open", {"from": "closed"})
        assert alerter.flush()
    assert webhook.wait_for(1)
    assert alerter.failed == 1 and alerter.delivered == 0
    assert metrics.value("alerts_failed_total", event="breaker_open") == 1
    assert "hook-secret-part" not in caplog.text and "hook-secret-part" not in repr(alerter)
    assert "HTTP 500" in caplog.text


def test_unreachable_webhook_does_not_block_the_caller(port):
    alerter = Alerter(f"http://127.0.0.1:{port}/nothing-listens", clock=FakeClock(), timeout_s=1.0)
    assert alerter.send("breaker_open", {"from": "closed"})  # returns at once; delivery is in the background
    assert alerter.flush(5.0)
    assert alerter.failed == 1
    assert alerter.recent()[0]["event"] == "breaker_open"


def test_without_a_webhook_alerts_are_only_recorded():
    alerter = Alerter("", clock=FakeClock())
    assert alerter.send("token_refresh_failed", {"reason": "x"})
    assert alerter.flush(1.0)
    assert [a["event"] for a in alerter.recent()] == ["token_refresh_failed"]


def test_gateway_breaker_opening_against_a_down_kis_reaches_the_webhook(make_gateway, sim, webhook):
    gw = make_gateway(ALERT_WEBHOOK_URL=webhook.url, BREAKER_FAIL_MAX="3", RETRY_ATTEMPTS="1",
                      TASK_QUEUE="inline://", GATEWAY_COLLECT_WINDOW_MS="0")
    assert gw.reader.get("quote", ["005930"], deadline_s=3.0)["005930"].status == "fresh"
    sim.set_faults(down=True)
    for code in ("000660", "035420", "035720", "051910", "005380"):
        gw.reader.get("quote", [code], deadline_s=2.0)
        if gw.breaker.state == "open":
            break
    assert gw.breaker.state == "open"
    assert gw.alerts.flush()
    assert "breaker_open" in [b["event"] for b in webhook.wait_for(1)]
