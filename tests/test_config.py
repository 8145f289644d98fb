import pytest

from shared import budget
from shared.config import Secret, SettingsError, load_settings, settings_markdown, settings_table


def test_defaults_follow_the_2026_profile():
    s = load_settings({})
    assert s.kis_limit == 18 and s.budget == 17
    assert s.kis_base_url == "https://openapi.koreainvestment.com:9443"
    assert s.effective_batch_size == 20
    paper = load_settings({"KIS_ENV": "paper"})
    assert paper.kis_limit == 1 and paper.budget == 1 and paper.effective_batch_size == 1
    assert paper.kis_base_url.endswith(":29443")
    legacy = load_settings({"KIS_LIMIT_PROFILE": "kis-legacy"})
    assert legacy.kis_limit == 20 and legacy.budget == 19


def test_base_url_override_is_used_as_given():
    s = load_settings({"KIS_BASE_URL": "http://127.0.0.1:18080/"})
    assert s.kis_base_url == "http://127.0.0.1:18080"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"KIS_ENV": "prod"}, "KIS_ENV"),
        ({"KIS_LIMIT_PROFILE": "fast"}, "KIS_LIMIT_PROFILE"),
        ({"GATEWAY_BATCH_SIZE": "31"}, "GATEWAY_BATCH_SIZE"),
        ({"GATEWAY_BATCH_SIZE": "x"}, "GATEWAY_BATCH_SIZE"),
        ({"GATEWAY_BUDGET": "19"}, "GATEWAY_BUDGET"),
        ({"KIS_ENV": "paper", "GATEWAY_BUDGET": "2"}, "GATEWAY_BUDGET"),
        ({"QUOTE_TTL_S": "5"}, "QUOTE_TTL_S"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"KIS_BASE_URL": "ftp://x"}, "KIS_BASE_URL"),
        ({"GATEWAY_SHARE_QUOTES": "0.9"}, "GATEWAY_SHARE"),
        ({"BREAKER_STORE": "mysql://"}, "BREAKER_STORE"),
        ({"TOKEN_REFRESH_MARGIN_S": "60"}, "TOKEN_REFRESH_MARGIN_S"),
        ({"PRELOAD_TIME_KST": "25:00"}, "PRELOAD_TIME_KST"),
        ({"PRELOAD_SYMBOLS": "005930,12"}, "PRELOAD_SYMBOLS"),
        ({"MARKET_HOURS_AWARE": "maybe"}, "MARKET_HOURS_AWARE"),
        ({"KIS_APP_KEY": "k"}, "KIS_APP_SECRET"),
        ({"GATEWAY_DEV_API_KEY": "dev"}, "GATEWAY_MODE"),
    ],
)
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle):
        load_settings(env)


def test_secrets_never_show():
    s = load_settings({"KIS_APP_KEY": "PSkey123", "KIS_APP_SECRET": "topsecret", "KIS_ACCOUNT_NO": "12345678-01"})
    text = repr(s) + str(s.redacted())
    for value in ("PSkey123", "topsecret", "12345678", "1234567801"):
        assert value not in text
    assert s.kis_app_key.get() == "PSkey123"
    assert s.kis_account_no.get() == "1234567801"
    assert repr(Secret("x")) == "Secret('***')"


def test_bad_account_number_is_not_echoed():
    with pytest.raises(SettingsError) as err:
        load_settings({"KIS_ACCOUNT_NO": "98765-4"})
    assert "98765" not in str(err.value) and "KIS_ACCOUNT_NO" in str(err.value)


def test_queue_rates_follow_the_budget():
    s = load_settings({"GATEWAY_BUDGET": "10"})
    assert budget.queue_rate(s, "quotes") == 6.0 and budget.queue_rate(s, "orders") == 2.0
    assert budget.reserve(s, "orders") == 2
    assert sum(budget.reserve(s, c) for c in ("orders", "quotes", "reference")) <= s.budget


@pytest.mark.parametrize(("env", "spacing_ms"), [({}, 60), ({"GATEWAY_LIMITER_GUARD_MS": "0"}, 58),
                                                 ({"KIS_ENV": "paper"}, 1030),
                                                 ({"GATEWAY_MIN_CALL_SPACING_MS": "0"}, 0)])
def test_grants_are_spread_evenly_over_the_limiters_window(env, spacing_ms):
    """N grants at the default spacing fill the window (1 s + guard) evenly, with no hole left at its end for a
    waiting order to wait through, and never faster than the window allows."""
    s = load_settings(env)
    assert budget.call_spacing_ms(s) == spacing_ms
    if spacing_ms:
        window_ms = 1000 + s.limiter_guard_ms
        assert window_ms - spacing_ms < s.budget * spacing_ms <= window_ms


def test_settings_table_lists_every_variable():
    rows = settings_table()
    names = [r[0] for r in rows]
    assert "KIS_APP_KEY" in names and "GATEWAY_BATCH_SIZE" in names
    assert len(names) == len(set(names))


def test_readme_lists_every_setting():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name, *_ in settings_table():
        assert f"`{name}`" in readme, f"README settings table lacks {name}"
    # The table itself is generated from the declarations (`kisgw settings-table`), not kept by hand.
    assert settings_markdown() in readme, "README settings table differs from `kisgw settings-table`"
