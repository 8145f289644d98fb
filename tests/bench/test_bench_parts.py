"""The benchmark's parts: figures, the load generator's request shapes, the naive gateway, the probes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import deque

import requests

from shared.bench.ceiling import hits_while_held
from shared.bench.figures import percentile, phase_figures, ratio
from shared.bench.load import LoadResult, LoadSpec, RequestRecord, _count, _pick, run_specs
from shared.bench.naive import NaiveFleet, ProcessLimiter, _deadline
from shared.bench.probes import CallSampler, children, sim_app_label, vm_hwm_kib
from shared.bench.report import checks, table
from shared.config import load_settings


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def test_ratio_says_how_many_times_better():
    assert ratio(1000.0, 10.0, higher_is_better=True) == 100.0
    assert ratio(5.0, 2000.0, higher_is_better=False) == 400.0
    assert ratio(0.0, 0.0, higher_is_better=False) is None


def test_rotate_sweeps_the_universe_without_overlap_between_clients():
    spec = LoadSpec("q", ("http://x",), "/v1/quotes", "k", clients=3, duration_s=1, symbols=tuple(f"{i:06d}"
                    for i in range(30)), per_request=5, mode="rotate")
    seen = [s for i in range(2) for w in range(3) for s in _pick(spec, None, w, i)]
    assert len(seen) == 30 and len(set(seen)) == 30


def test_answer_counting_per_symbol_status():
    body = {"quotes": {"A": {"status": "fresh"}, "B": {"status": "stale", "age_s": 4.5}, "C": {"status": "pending"},
                       "D": {"status": "error"}}, "served_at": "x"}
    assert _count(body) == ((1, 1, 1, 1), 4.5)
    assert _count({"holdings": [], "totals": {}}) == ((1, 0, 0, 0), 0.0)  # balance: one whole answer


def test_process_limiter_never_grants_more_than_n_in_any_second():
    limiter = ProcessLimiter(5)
    grants: list[float] = []

    class Granted(deque):
        """The limiter's log, noting each grant at the instant the limiter gave it (a caller noting the time
        after `gate` returns may be descheduled in between on a busy machine and note it late)."""

        def append(self, x):
            grants.append(x)
            super().append(x)

    limiter._log = Granted()

    def caller():
        # 12 grants at 5/s take over 2 s: a deadline far enough that a busy machine cannot turn a wait into a
        # refusal (this test is about the count per second, not about deadlines).
        _deadline.set(time.monotonic() + 30.0)
        for _ in range(3):
            limiter.gate("quotes", "FHKST01010100")

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    grants.sort()
    assert len(grants) == 12
    assert max(sum(1 for g in grants if a <= g < a + 1.0) for a in grants) <= 5


def test_naive_gateway_makes_one_kis_call_per_symbol(sim):
    settings = load_settings({"KIS_BASE_URL": sim.base_url, "KIS_APP_KEY": "PSnaivetest0001", "KIS_APP_SECRET": "s",
                              "KIS_ACCOUNT_NO": "50000000-02"})
    fleet = NaiveFleet(settings, instances=2)
    try:
        sim.reset_stats()
        for base in fleet.base_urls:
            body = requests.get(f"{base}/v1/quotes?symbols=005930,000660,035420", timeout=10).json()
            assert {q["status"] for q in body["quotes"].values()} == {"fresh"}
            assert body["quotes"]["005930"]["price"] > 0
        stats = sim.stats()
        # No cache and no batching: 3 symbols x 2 instances = 6 single-quote calls.
        assert stats["calls"] == {"FHKST01010100": 6}
        assert stats["by_app"][sim_app_label("PSnaivetest0001")]["calls"] == 6
        balance = requests.get(f"{fleet.base_urls[0]}/v1/account/balance", timeout=10)
        assert balance.status_code == 200 and balance.json()["status"] == "fresh"
    finally:
        fleet.stop()


def test_load_generator_counts_answers_against_a_real_server(sim):
    settings = load_settings({"KIS_BASE_URL": sim.base_url, "KIS_APP_KEY": "PSnaivetest0002", "KIS_APP_SECRET": "s"})
    fleet = NaiveFleet(settings, instances=1)
    try:
        spec = LoadSpec("q", fleet.base_urls, "/v1/quotes", "k", clients=2, duration_s=0.6,
                        symbols=("005930", "000660"), per_request=2, rate_per_s=10)
        with CallSampler(sim, sim_app_label("PSnaivetest0002"), every_s=0.1) as sampler:
            (result,) = run_specs([spec])
        assert 4 <= result.requests <= 8  # paced at 10/s for 0.6 s
        assert result.symbol_counts()["fresh"] == 2 * result.requests
        assert all(r.http == 200 for r in result.records)
        assert sampler.samples[-1][1] == 2 * result.requests
    finally:
        fleet.stop()


def test_phase_figures_and_table_from_synthetic_runs():
    gw = LoadResult("q", 0.0, 10.0, [RequestRecord(0.1 * i, 0.005, 200, (5, 0, 0, 0)) for i in range(100)])
    nv = LoadResult("q", 0.0, 10.0, [RequestRecord(1.0 * i, 1.5, 200, (2, 0, 0, 3)) for i in range(10)])
    sim_gw = {"by_app": {"app-g": {"calls": 5, "refused": 0}}, "max_calls_in_any_1s_window": {"app-g": 3},
              "violations": 0, "calls": {"FHKST11300006": 5}, "refused": {}, "limit_per_s": 18}
    sim_nv = {"by_app": {"app-n": {"calls": 50, "refused": 9}}, "max_calls_in_any_1s_window": {"app-n": 18},
              "violations": 0, "calls": {"FHKST01010100": 50}, "refused": {"EGW00201": 9}, "limit_per_s": 18}
    g = phase_figures([gw], sim_gw, "app-g", budget=17, duration_s=10.0)
    n = phase_figures([nv], sim_nv, "app-n", budget=17, duration_s=10.0)
    assert g["throughput_rps"] == 10.0 and g["kis_calls_per_symbol_request"] == 0.01
    assert n["kis_calls_per_symbol_request"] == 1.0 and n["fresh_pct"] == 40.0
    results = {"budget": 17, "kis_limit": 18, "scenarios": {"cache_hit": {"gateway": g, "naive": n, "shape": "s"}}}
    text = table(results)
    assert "KIS calls / symbol-request" in text and "100.0x better" in text and "300.0x better" in text
    assert all(passed is not False for _, passed in checks(results))


def test_peak_rss_of_a_process_tree():
    assert vm_hwm_kib(os.getpid()) > 10_000
    proc = subprocess.Popen(["sh", "-c", "sleep 5 & wait"])
    try:
        deadline = time.monotonic() + 5
        while not children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children(proc.pid), "the shell's sleep child was not found"
    finally:
        proc.kill()
        proc.wait()


def test_ceiling_runs_count_only_when_every_answer_was_a_200():
    from shared.bench.ceiling import _ok_answers

    assert _ok_answers({"requests": 100, "non_2xx": 0, "errors": 0})
    assert not _ok_answers({"requests": 100, "non_2xx": 100, "errors": 0})  # wrk: every answer a 400
    assert not _ok_answers({"requests": 10, "http": {"200": 9, "400": 1}, "errors": 0})
    assert not _ok_answers({"requests": 0, "non_2xx": 0, "errors": 0})


def test_ceiling_rounds_are_merged_and_ratios_taken_within_a_round():
    from shared.bench.ceiling import _median, _merged

    def seg(rps, p99, non_2xx=0):
        return {"name": "t", "generator": "wrk", "requests": int(rps), "rps": rps, "non_2xx": non_2xx, "errors": 0,
                "http_errors": non_2xx, "latency_ms": {"p50": p99 / 2, "p95": None, "p99": p99, "max": None}}

    merged = _merged([seg(6000, 8.0), seg(5000, 30.0), seg(7000, 9.0)])
    assert merged["requests"] == 18000 and merged["rps"] == 6000.0
    assert merged["latency_ms"]["p99"] == 9.0 and merged["latency_ms"]["p50"] == 4.5  # medians of the rounds
    assert merged["ok_answers"]
    assert not _merged([seg(6000, 8.0), seg(5000, 9.0, non_2xx=3)])["ok_answers"]
    assert _median([0.7, None, 0.9, 0.8]) == 0.8 and _median([0.7, 0.9]) == 0.8 and _median([None]) is None
    timed = [{**seg(6000, 8.0), "cpu_us_per_request": us} for us in (150.0, 400.0, 160.0)]
    assert _merged(timed)["cpu_us_per_request"] == 160.0  # the median round's, as the latencies
    assert _merged([seg(6000, 8.0)])["cpu_us_per_request"] is None  # not measured: not made up


def test_hits_while_held_are_those_sent_after_every_waiter_and_answered_before_any():
    # Waiters (start, latency ms, status, sent): the last written 0.5 s after their client started, the first
    # answered at 2.0 s. The probe's client started 0.1 s later on the same clock.
    waiters = {"started_mono": 100.0, "timeline": [(0.0, 2000.0, 200, 0.2), (0.0, 2500.0, 200, 0.5)]}
    hits = {"started_mono": 100.1, "timeline": [(0.1, 300.0, 200, 0.1),   # sent during the arrival
                                                (0.5, 5.0, 200, 0.5),     # held
                                                (1.0, 40.0, 200, 1.0),    # held
                                                (1.85, 100.0, 200, 1.85)]}  # answered after the first waiter
    held = hits_while_held(waiters, hits)
    assert held["requests"] == 2 and held["window_s"] == 1.5 and held["arrival_s"] == 0.5
    assert held["latency_ms"]["max"] == 40.0
    assert hits_while_held({}, hits)["requests"] == 0


def test_answers_for_symbols_with_a_copy_are_counted_apart():
    seen: set[str] = set()
    copies = [0, 0]
    _count({"quotes": {"A": {"status": "fresh"}, "B": {"status": "pending"}}}, seen, copies)
    assert seen == {"A"} and copies == [0, 0]  # B never had data: no copy to miss
    _count({"quotes": {"A": {"status": "pending"}, "B": {"status": "stale", "age_s": 1}}}, seen, copies)
    assert seen == {"A", "B"} and copies == [1, 1]  # A had a copy and came back without data
    _count({"quotes": {"A": {"status": "stale", "age_s": 2}, "B": {"status": "fresh"}}}, seen, copies)
    assert copies == [3, 1]


def test_a_cold_start_is_the_median_of_its_starts_and_a_failed_start_is_not_hidden():
    from shared.bench.probes import median_start

    times = iter([0.9, 0.4, 0.5])
    got = median_start(lambda: {"target": "quotes", "first_answer_s": next(times), "http": 200})
    assert got["first_answer_s"] == 0.5 and got["samples_s"] == [0.4, 0.5, 0.9]
    starts = iter([{"target": "quotes", "first_answer_s": 0.4}, {"target": "quotes", "error": "exited with code 3"},
                   {"target": "quotes", "first_answer_s": 0.5}])
    assert median_start(lambda: next(starts)) == {"target": "quotes", "error": "exited with code 3"}
