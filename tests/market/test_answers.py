"""What a reader answers (shared/market/answers.py): stale answers under outage come from the last-known copy."""

from __future__ import annotations

from shared.kis.errors import KISServerError
from shared.market.answers import (
    CIRCUIT_OPEN,
    TOKEN_REASON,
    failure_reason,
    from_entry,
    still_waiting,
    unavailable,
)
from shared.market.breaker import BreakerOpenError
from shared.market.cache import CacheEntry
from shared.market.token import TokenUnavailableError

COPY = CacheEntry({"price": "70000"}, stored_at=100.0, fresh=False, age_s=42.0)
NEGATIVE = CacheEntry({"error": "unknown symbol"}, stored_at=100.0, fresh=True, age_s=1.0)


def test_kis_unavailable_answers_the_last_known_copy_with_its_age_and_why():
    r = unavailable(COPY, CIRCUIT_OPEN)
    assert (r.status, r.value, r.age_s, r.reason) == ("stale", {"price": "70000"}, 42.0, CIRCUIT_OPEN)
    assert r.to_json() == {"status": "stale", "price": "70000", "age_s": 42.0, "reason": CIRCUIT_OPEN}


def test_without_a_copy_the_answer_is_the_reason():
    assert unavailable(None, CIRCUIT_OPEN).to_json() == {"status": "error", "reason": CIRCUIT_OPEN}
    assert unavailable(NEGATIVE, CIRCUIT_OPEN).status == "error"  # a kept negative answer is no copy of data


def test_at_the_deadline_a_symbol_still_being_fetched_is_stale_or_pending():
    assert (still_waiting(COPY).status, still_waiting(COPY).reason) == ("stale", "refresh pending")
    assert still_waiting(None).to_json() == {"status": "pending", "reason": "being fetched from KIS"}
    assert still_waiting(NEGATIVE).status == "pending"


def test_a_fresh_copy_or_a_kept_negative_answer_is_given_as_it_is():
    fresh = CacheEntry({"price": "1"}, stored_at=1.0, fresh=True, age_s=0.5)
    assert from_entry(fresh).to_json() == {"status": "fresh", "price": "1", "age_s": 0.5}
    assert from_entry(NEGATIVE).to_json() == {"status": "error", "reason": "unknown symbol"}


def test_failure_reasons_name_what_failed():
    assert failure_reason(BreakerOpenError("kis", None, 60.0)) == CIRCUIT_OPEN
    assert failure_reason(TokenUnavailableError("none yet")).startswith(TOKEN_REASON)
    assert failure_reason(KISServerError("boom", msg_cd="EGW00001")) == "KIS error EGW00001"
    assert failure_reason(ValueError()) == "ValueError"
