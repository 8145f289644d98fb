"""Unit tests of the drain-trigger adapters and of the local server's dispatch rules (no network)."""

import base64
import json
import threading

import pytest
from google.cloud import tasks_v2

from shared import budget
from shared.backends import trigger_from_settings
from shared.budget import CALL_CLASSES
from shared.cloud.inline_trigger import InlineTrigger
from shared.cloud.local_tasks_dispatch import RetryRule, TokenBucket, burst_for, fake_oidc_jwt
from shared.cloud.tasks import CloudTasksTrigger, queue_specs
from shared.config import SettingsError, load_settings
from shared.market.ports import drain_task_id


def test_retry_delays_follow_the_documented_example():
    # Cloud Tasks docs: min 10 s, max 300 s, 3 doublings -> 10, 20, 40, 80, then +80 linearly, capped at 300.
    rule = RetryRule(max_attempts=10, max_retry_duration_s=0, min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    assert [rule.delay(i) for i in range(8)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_retry_gives_up_only_when_attempts_and_duration_are_both_used():
    rule = RetryRule(max_attempts=3, max_retry_duration_s=60, min_backoff_s=1, max_backoff_s=10, max_doublings=2)
    assert not rule.exhausted(attempts=3, first_attempt_at=0, now=30)   # duration left
    assert not rule.exhausted(attempts=2, first_attempt_at=0, now=90)   # attempts left
    assert rule.exhausted(attempts=3, first_attempt_at=0, now=90)
    unlimited = RetryRule(max_attempts=-1, max_retry_duration_s=0, min_backoff_s=1, max_backoff_s=10,
                          max_doublings=2)
    assert not unlimited.exhausted(attempts=1000, first_attempt_at=0, now=1e6)


def test_retry_rule_defaults_for_an_empty_config():
    rule = RetryRule.from_config(tasks_v2.RetryConfig())
    assert (rule.max_attempts, rule.min_backoff_s, rule.max_backoff_s, rule.max_doublings) == (100, 0.1, 3600, 16)


def test_token_bucket_spaces_dispatches_at_the_rate():
    bucket = TokenBucket(rate=5, burst=1, now=0.0)
    assert bucket.take(0.0) == 0
    assert bucket.take(0.0) == pytest.approx(0.2)
    assert bucket.take(0.1) == pytest.approx(0.1)   # nothing taken while waiting
    assert bucket.take(0.2) == 0
    # Idle time saves up at most `burst` tokens.
    assert bucket.take(10.0) == 0
    assert bucket.take(10.0) > 0


def test_burst_choice():
    assert burst_for(5.0, requested=0, default_burst=1) == 1
    assert burst_for(5.5, requested=0, default_burst=None) == 6
    assert burst_for(5.0, requested=3, default_burst=1) == 3


def test_fake_oidc_token_carries_audience_and_email():
    token = fake_oidc_jwt("drain@p.iam.gserviceaccount.com", "https://gw.example", now=1000)
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == "https://gw.example"
    assert claims["email"] == "drain@p.iam.gserviceaccount.com"
    assert claims["exp"] > claims["iat"] == 1000


def test_drain_task_ids_are_valid_cloud_tasks_ids():
    assert drain_task_id("quotes", "quotes", 1234) == "drain-quotes-1234"
    for bad in [("quo-tes", "quotes", 1), ("quotes", "nope", 1), ("quotes", "quotes", -1), ("", "quotes", 1)]:
        with pytest.raises(ValueError):
            drain_task_id(*bad)


def test_queue_specs_follow_the_settings():
    s = load_settings({"GATEWAY_BUDGET": "10", "RETRY_MAX_DELAY_S": "3", "BREAKER_RESET_TIMEOUT_S": "45"})
    specs = {spec.call_class: spec for spec in queue_specs(s)}
    assert set(specs) == set(CALL_CLASSES)
    for c, spec in specs.items():
        assert spec.queue_id == f"kisgw-drain-{c}"
        assert spec.max_dispatches_per_second == budget.queue_rate(s, c)
        assert spec.max_concurrent_dispatches == budget.queue_concurrency(s, c)
        assert (spec.min_backoff_s, spec.max_backoff_s) == (3.0, 45.0)
    q = specs["quotes"].queue("p", "l")
    assert q.name == "projects/p/locations/l/queues/kisgw-drain-quotes"
    assert q.rate_limits.max_dispatches_per_second == 6.0
    assert q.retry_config.min_backoff.total_seconds() == 3.0


def test_inline_trigger_runs_once_per_slot_in_the_background():
    calls, done = [], threading.Event()

    def drain(kind, call_class, slot):
        calls.append((kind, call_class, slot, threading.current_thread().name))
        done.set()

    trigger = InlineTrigger(drain)
    assert trigger.request_drain("quotes", "quotes", 7) is True
    assert trigger.request_drain("quotes", "quotes", 7) is False
    assert done.wait(5)
    assert trigger.join(5)
    assert trigger.request_drain("quotes", "quotes", 8) is True
    assert trigger.join(5)
    assert [c[:3] for c in calls] == [("quotes", "quotes", 7), ("quotes", "quotes", 8)]
    assert all(c[3] != threading.current_thread().name for c in calls)


def test_inline_trigger_survives_a_failing_drain_and_forgets_old_slots():
    def drain(kind, call_class, slot):
        raise RuntimeError("KIS down")

    trigger = InlineTrigger(drain, background=False, remember=2)
    assert trigger.request_drain("daily", "reference", 1)      # the error is logged, not raised
    assert trigger.request_drain("daily", "reference", 2)
    assert trigger.request_drain("daily", "reference", 3)
    assert trigger.request_drain("daily", "reference", 1)       # forgotten after `remember` newer slots


def test_trigger_from_settings_picks_the_adapter():
    def noop(*_):
        return None

    assert isinstance(trigger_from_settings(load_settings({"TASK_QUEUE": "local://"}), inline=noop), InlineTrigger)
    with pytest.raises(SettingsError):
        trigger_from_settings(load_settings({"TASK_QUEUE": "local://"}))
    with pytest.raises(SettingsError, match="TASK_TARGET_URL"):
        trigger_from_settings(load_settings({"TASK_QUEUE": "cloudtasks://127.0.0.1:1"}))
    s = load_settings({"TASK_QUEUE": "cloudtasks://127.0.0.1:1", "TASK_TARGET_URL": "http://127.0.0.1:2"})
    trigger = trigger_from_settings(s)
    assert isinstance(trigger, CloudTasksTrigger)
    assert trigger.queue_name("orders") == "projects/local/locations/asia-northeast3/queues/kisgw-drain-orders"
