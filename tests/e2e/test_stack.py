"""End to end over HTTP against the running local stack: functions under gunicorn, local Cloud Tasks pushing
drains, the simulator as KIS."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = pytest.mark.slow


def get(stack, path, **kw):
    headers = {"X-API-Key": stack.dev_api_key, **kw.pop("headers", {})}
    return requests.get(stack.base_url + path, headers=headers, timeout=10, **kw)


def post(stack, path, body=None, **kw):
    headers = {"X-API-Key": stack.dev_api_key, "Content-Type": "application/json", **kw.pop("headers", {})}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body or {})
    return requests.post(stack.base_url + path, data=data, headers=headers, timeout=10, **kw)


def test_cold_miss_is_fresh_within_a_second(stack):
    started = time.monotonic()
    r = get(stack, "/v1/quotes?symbols=005930,000660")
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    quotes = r.json()["quotes"]
    assert set(quotes) == {"005930", "000660"}
    assert all(q["status"] == "fresh" and q["price"] > 0 and q["as_of"] for q in quotes.values())
    assert elapsed < 1.5
    # The drain arrived as a Cloud Tasks push with the real headers.
    assert stack.tasks_server.stats()


def test_many_concurrent_clients_share_the_kis_budget(stack):
    codes = [s["code"] for s in stack.sim.symbols()[100:160]]
    before = stack.sim.stats()
    started = time.monotonic()
    with ThreadPoolExecutor(40) as pool:
        replies = list(pool.map(lambda i: get(stack, "/v1/quotes?symbols=" + ",".join(codes[i % 20:i % 20 + 40])),
                                range(80)))
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in replies)
    statuses = [q["status"] for r in replies for q in r.json()["quotes"].values()]
    assert statuses.count("fresh") / len(statuses) > 0.9
    after = stack.sim.stats()
    multi = after["calls"].get("FHKST11300006", 0) - before["calls"].get("FHKST11300006", 0)
    # 60 distinct symbols in batches of 20, at most one fetch per symbol per freshness window (quotes live
    # 2 s here, and readers near the end of a window start one refresh ahead): on a busy machine the 80
    # requests may span more than one window.
    windows = 1 + int(elapsed / 2.0)
    assert multi <= windows * (60 / 20) + 2, (multi, elapsed)
    assert after["violations"] == 0


def test_every_read_route_answers(stack):
    assert get(stack, "/v1/indices?codes=0001,1001").json()["indices"]["1001"]["status"] == "fresh"
    daily = get(stack, "/v1/daily-prices?symbols=035420").json()["daily"]["035420"]
    assert daily["status"] == "fresh" and len(daily["bars"]) == 30
    info = get(stack, "/v1/symbols?symbols=035420").json()["symbols"]["035420"]
    assert info["status"] == "fresh" and info["name"] == "NAVER"
    health = get(stack, "/health")
    assert health.status_code == 200 and health.json()["checks"]["redis"] == "ok"
    stats = get(stack, "/stats").json()
    assert stats["metrics"]["counters"]["kis_calls_total"]
    # /metrics is an internal function (no load balancer route): called at its own URL.
    metrics = requests.get(stack.url("metrics") + "/metrics", headers={"X-API-Key": stack.dev_api_key}, timeout=10)
    assert "kisgw_kis_calls_total" in metrics.text


def test_older_gateway_job_works_unchanged(stack):
    r = post(stack, "/api/market-data/snapshot", {"stock_code": "005930", "is_index": False})
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["data"]["price"] > 0
    r = post(stack, "/api/market-data/snapshot", {"stock_code": "0001", "is_index": True})
    assert r.status_code == 200 and r.json()["data"]["status"] == "fresh"
    r = post(stack, "/api/market-data/daily-prices", {"stock_code": "005930"})
    assert r.status_code == 200 and r.json()["data"]["bars"]


@pytest.mark.parametrize(("method", "path", "body", "status", "needle"), [
    ("GET", "/v1/nowhere", None, 404, "no route"),
    ("GET", "/v1/quotes?symbols=12345", None, 400, "symbols"),
    ("GET", "/v1/quotes", None, 400, "symbols is required"),
    ("GET", "/v1/quotes?symbols=" + ",".join(["005930"] * 101), None, 400, "at most 100"),
    ("POST", "/api/market-data/snapshot", "{not json", 400, "not valid JSON"),
    ("POST", "/api/market-data/snapshot", {"stock_code": "005930", "extra": 1}, 400, "unknown field"),
    ("POST", "/v1/quotes", {}, 405, "use GET"),
])
def test_bad_input_is_a_4xx_naming_the_problem(stack, method, path, body, status, needle):
    r = get(stack, path) if method == "GET" else post(stack, path, body)
    assert r.status_code == status
    assert needle in r.json()["error"]["message"]


def test_kis_outage_serves_stale_then_recovers(stack):
    assert get(stack, "/v1/quotes?symbols=035720").json()["quotes"]["035720"]["status"] == "fresh"
    stack.sim.set_faults(down=True)
    try:
        time.sleep(2.1)  # the fresh copy (2 s) expires; the last-known copy stays
        deadline = time.monotonic() + 20
        seen = None
        while time.monotonic() < deadline:
            q = get(stack, "/v1/quotes?symbols=035720&deadline_ms=1500").json()["quotes"]["035720"]
            if q["status"] == "stale":
                seen = q
                break
        assert seen is not None and seen["price"] > 0 and seen["age_s"] >= 2 and seen["reason"]
    finally:
        stack.sim.set_faults(down=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if get(stack, "/v1/quotes?symbols=035720").json()["quotes"]["035720"]["status"] == "fresh":
            break
        time.sleep(0.5)
    else:
        pytest.fail("the gateway did not recover after KIS came back")


def test_token_refresh_and_preload_targets(stack):
    # Internal functions: their own URLs, called as Cloud Scheduler calls them (its ID token for that URL).
    def internal(function, path, body=None):
        token = stack.issuer.id_token(stack.email("sched-invoker"), stack.url(function))
        return requests.post(stack.url(function) + path, json=body or {}, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})

    r = internal("refresh_token", "/internal/refresh-token")
    assert r.status_code == 200 and r.json()["token"]["state"] == "valid"
    r = internal("preload", "/internal/preload", {"symbols": ["068270"], "force": True})
    assert r.status_code == 200 and r.json()["queued"]["daily"] >= 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        d = get(stack, "/v1/daily-prices?symbols=068270&deadline_ms=0").json()["daily"]["068270"]
        if d["status"] == "fresh":
            break
        time.sleep(0.2)
    else:
        pytest.fail("preload did not fill the daily cache")


def test_scheduler_push_reaches_the_functions(stack):
    fired = stack.scheduler.run_now("refresh-token")
    assert fired is None or getattr(fired, "status", 200) < 500


def test_forced_refresh_goes_through_the_queue(stack):
    get(stack, "/v1/quotes?symbols=051910")
    before = stack.sim.stats()["calls"].get("FHKST11300006", 0)
    q = get(stack, "/v1/quotes?symbols=051910&refresh=true").json()["quotes"]["051910"]
    assert q["status"] == "fresh"
    assert stack.sim.stats()["calls"].get("FHKST11300006", 0) == before + 1


def test_no_key_is_401(stack):
    r = requests.get(stack.base_url + "/v1/quotes?symbols=005930", timeout=5)
    assert r.status_code == 401 and r.json()["error"]["message"]


def test_concurrent_waiters_do_not_exhaust_threads(stack):
    codes = [s["code"] for s in stack.sim.symbols()[300:340]]
    results = []

    def one(i):
        results.append(get(stack, f"/v1/quotes?symbols={codes[i % 40]}").status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(120)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results.count(200) == 120


def test_stack_talks_to_a_given_kis_instead_of_starting_a_simulator(redis_url, sim):
    """With KIS credentials (and KIS_BASE_URL) in the environment no simulator is started."""
    import uuid

    from shared.localstack import LocalStack, free_port

    prefix = f"test:e2e-ext:{uuid.uuid4().hex[:8]}"
    other = LocalStack(port=free_port(), quiet=True, env={
        "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "MARKET_HOURS_AWARE": "false",
        "KIS_APP_KEY": "PSexternal-key", "KIS_APP_SECRET": "external-secret", "KIS_BASE_URL": sim.base_url})
    other.start()
    try:
        assert other.sim is None
        r = requests.get(other.base_url + "/v1/quotes?symbols=005930", headers={"X-API-Key": other.dev_api_key},
                         timeout=10)
        assert r.json()["quotes"]["005930"]["status"] == "fresh"
        assert sim.stats()["calls"]["FHKST11300006"] >= 1
    finally:
        other.stop()


def test_stack_with_the_firestore_emulator(redis_url):
    """`kisgw dev --firestore`: breaker state and order records in the SDK's Firestore emulator."""
    import uuid

    from shared.cloud.local_firestore import FirestoreEmulator
    from shared.localstack import LocalStack, free_port

    missing = FirestoreEmulator.missing()
    if missing:
        pytest.skip(f"needs the Google Cloud SDK's Firestore emulator: {missing}")
    prefix = f"test:e2e-fs:{uuid.uuid4().hex[:8]}"
    fs = LocalStack(port=free_port(), quiet=True, firestore=True, env={
        "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "KIS_APP_KEY": "", "KIS_APP_SECRET": ""})
    fs.start()
    try:
        headers = {"X-API-Key": fs.dev_api_key}
        body = {"side": "buy", "symbol": "005930", "quantity": 1, "order_type": "market"}
        key = {"Idempotency-Key": uuid.uuid4().hex, **headers}
        first = requests.post(fs.base_url + "/v1/orders", json=body, headers=key, timeout=10)
        again = requests.post(fs.base_url + "/v1/orders", json=body, headers=key, timeout=10)
        assert first.status_code == again.status_code == 200 and first.json() == again.json()
        assert fs.sim.stats()["orders"] == 1
        assert requests.get(fs.base_url + "/health", timeout=5).json()["checks"]["breaker"] == "closed"
    finally:
        fs.stop()
