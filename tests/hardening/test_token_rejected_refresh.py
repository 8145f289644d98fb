"""A reader's refresh request naming the refused token (by fingerprint) makes the refresh function replace it;
without it the refresh function only refreshes when the token is due (found by the fault matrix)."""

from __future__ import annotations

import json
import time

import pytest
from flask import Flask, request

from shared.api.handlers import refresh_token
from shared.market.token import rejected_fingerprint, token_fingerprint


def call(gw, body):
    app = Flask(__name__)
    with app.test_request_context("/internal/refresh-token", method="POST", data=json.dumps(body),
                                  content_type="application/json"):
        return refresh_token(gw, request)


def test_refresh_function_replaces_the_token_a_reader_reports_refused(make_gateway, sim, sim_clock, redis_client):
    gw = make_gateway()
    first = gw.tokens.get()
    fp = token_fingerprint(first)
    assert rejected_fingerprint(f"KIS rejected the token (fp={fp}); a refresh was requested") == fp
    assert first not in f"(fp={fp})"
    # Not named: the scheduled path finds the token not due and keeps it.
    body, status = call(gw, {"reason": "scheduled"})
    assert status == 200 and body["refreshed"] is False and gw.tokens.get() == first
    sim.expire_tokens()  # KIS revoked it (EGW00123 from now on): a re-issue gives a new token
    sim_clock.advance(61)  # past KIS's one-issue-a-minute rule
    redis_client.delete(gw.tokens._guard_key)  # and the gateway's own guard of it
    body, status = call(gw, {"reason": f"KIS rejected the token (fp={fp}); a refresh was requested"})
    assert status == 200 and body["refreshed"] is True
    assert gw.tokens.get() != first
    # A stale report (the token was already replaced) changes nothing.
    second = gw.tokens.get()
    body, status = call(gw, {"reason": f"KIS rejected the token (fp={fp})"})
    assert body["refreshed"] is False and gw.tokens.get() == second


def test_a_token_the_store_lost_is_written_again_not_kept_only_in_memory(make_gateway, sim, redis_client):
    """Secret Manager came back empty: the refresh function still holds the token in memory; its next run must
    put it back in the store (readers read only the store), without asking KIS for another one."""
    gw = make_gateway()
    first = gw.tokens.get()
    issued = sim.stats()["tokens_issued"]
    store = gw.token_store
    redis_client.delete(store.key)  # the store lost it
    assert store.read() is None
    gw.tokens.refresh_if_due(every_s=300)
    assert store.read() is not None and token_fingerprint(store.read().access_token) == token_fingerprint(first)
    assert sim.stats()["tokens_issued"] == issued


def test_a_token_issued_while_the_store_is_away_is_not_lost(make_gateway, sim, sim_clock, redis_client,
                                                           monkeypatch):
    gw = make_gateway()
    first = gw.tokens.get()
    sim.expire_tokens()
    sim_clock.advance(61)
    redis_client.delete(gw.tokens._guard_key)
    store = gw.token_store
    real_write = store.write

    def away(token):
        raise ConnectionError("Secret Manager unavailable")

    monkeypatch.setattr(store, "write", away)
    with pytest.raises(ConnectionError):  # issued, but the store is away
        gw.tokens.refresh(reason="token rejected by KIS", rejected=first)
    issued = sim.stats()["tokens_issued"]
    monkeypatch.setattr(store, "write", real_write)  # back
    gw.tokens.refresh_if_due(every_s=300)  # the next scheduled run
    stored = store.read()
    # The token issued meanwhile, written now (compared by fingerprint: a failing assert prints no token).
    assert stored is not None and token_fingerprint(stored.access_token) != token_fingerprint(first)
    assert token_fingerprint(gw.tokens.get()) == token_fingerprint(stored.access_token)
    assert sim.stats()["tokens_issued"] == issued  # not issued again (KIS allows one a minute)


def test_the_redis_token_store_key_never_expires(make_gateway, redis_client):
    """Memorystore runs volatile-lru: a key with a TTL may be evicted under memory pressure. The token is no
    cache entry (a lost token costs a re-issue, which KIS allows once a minute), so its key carries no TTL; only the
    refresh lock and the one-issue-a-minute guard do, by design (a guard evicted early lets KIS answer EGW00133,
    which sets it again)."""
    gw = make_gateway()
    gw.tokens.get()
    assert redis_client.exists(gw.token_store.key) and redis_client.ttl(gw.token_store.key) == -1
    assert redis_client.ttl(gw.tokens._status_key) == -1  # its published times (status, health) neither
    redis_client.delete(gw.token_store.key)
    gw.tokens.refresh_if_due(every_s=300)  # written again (see above): still without a TTL
    assert redis_client.ttl(gw.token_store.key) == -1


def test_after_a_store_outage_a_reader_names_the_refused_token_until_it_is_replaced(redis_client, redis_prefix):
    """Found by the fault matrix (secret_manager_down after token_revoked): KIS revoked the token while Secret
    Manager was away, the store came back empty, and the refresh function, finding its own copy usable, put it
    back; readers, knowing it refused, asked for "a usable token" without naming it, and the refresh function,
    finding the stored token not due, kept it: no reader had a token again."""
    from types import SimpleNamespace

    from shared.clock import FakeClock
    from shared.cloud.token_store import MemoryTokenStore
    from shared.market.token import TokenManager, TokenUnavailableError
    from tests.market.test_token_manager import Issuer

    clock = FakeClock(time.time())
    store, issuer, asked = MemoryTokenStore(), Issuer(clock), []
    common = dict(prefix=redis_prefix, app_key_id="app1", margin_s=300, clock=clock)
    writer = TokenManager(store, issuer, redis_client, writer=True, **common)
    reader = TokenManager(store, issuer, redis_client, writer=False, request_refresh=asked.append, **common)
    first = writer.get()
    assert reader.get() == first
    with pytest.raises(TokenUnavailableError):
        reader.on_rejected(first)  # KIS: EGW00123
    store._token = None  # the store came back empty
    writer.refresh_if_due(every_s=300)  # the scheduled run stores the writer's copy again
    asked.clear()
    with pytest.raises(TokenUnavailableError):
        reader.get()  # not the refused token again
    assert asked and rejected_fingerprint(asked[-1]) == token_fingerprint(first)  # and it says which one
    clock.advance(61)
    redis_client.delete(writer._guard_key)  # past KIS's one-issue-a-minute rule
    body, status = call(SimpleNamespace(tokens=writer), {"reason": asked[-1]})
    assert status == 200 and body["refreshed"] is True
    assert reader.get() not in (None, first) and issuer.calls == 2


def test_a_refresh_held_back_by_the_once_a_minute_rule_is_tried_again_soon_after_it_lifts():
    """The refresh queue's retry schedule (what Cloud Tasks, and the local server, follow after a 503): wherever
    in its minute the rule lifts, a retry comes within 20 s, and retries go on for more than two minutes. (Before:
    60 s, then 120 s, three attempts: a token revoked just after an issue stayed missing for up to two minutes.)"""
    from shared.cloud.local_tasks_dispatch import RetryRule
    from shared.cloud.tasks import refresh_queue_spec

    spec = refresh_queue_spec()
    rule = RetryRule.from_config(spec.queue("p", "l").retry_config)
    attempts, at = [0.0], 0.0
    while not rule.exhausted(len(attempts), 0.0, at):
        at += rule.delay(len(attempts) - 1)
        attempts.append(at)
    assert attempts[-1] >= 120.0, attempts
    for lifts_at in range(1, 61):  # the first try failed under the guard at 0; the guard lifts at lifts_at
        assert any(lifts_at <= a <= lifts_at + 20 for a in attempts), (lifts_at, attempts)
