"""A reader's refresh request naming the refused token (by fingerprint) makes the refresh function replace it;
without it the refresh function only refreshes when the token is due (found by the fault matrix)."""

from __future__ import annotations

import json

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
