"""Counters, gauges and histograms, in /stats JSON and Prometheus text."""

from __future__ import annotations

import re
import threading

from shared.api import status
from shared.observability.metrics import Metrics, cache_hit_ratio


def test_counters_by_label_and_totals():
    m = Metrics()
    m.inc("kis_calls_total", tr_id="FHKST11300006", outcome="ok")
    m.inc("kis_calls_total", 2, tr_id="FHKST11300006", outcome="EGW00201")
    m.inc("kis_calls_total", tr_id="FHKST01010400", outcome="ok")
    assert m.total("kis_calls_total") == 4
    assert m.total("kis_calls_total", outcome="ok") == 2
    assert m.by_label("kis_calls_total", "outcome") == {"ok": 2, "EGW00201": 2}
    assert m.by_label("kis_calls_total", "tr_id") == {"FHKST11300006": 3, "FHKST01010400": 1}


def test_batch_fill_uses_symbol_buckets_not_seconds():
    m = Metrics()
    for n in (20, 20, 20, 7):
        m.observe("batch_fill", float(n), kind="quote")
    h = m.histogram("batch_fill", kind="quote")
    assert h is not None and h.quantile(0.5) == 20.0 and h.mean() == 16.75
    text = m.prometheus()
    assert 'kisgw_batch_fill_bucket{kind="quote",le="10"} 1' in text
    assert 'kisgw_batch_fill_bucket{kind="quote",le="20"} 4' in text


def test_latency_histogram_quantiles_and_merge():
    m = Metrics()
    for _ in range(98):
        m.observe("request_seconds", 0.002, kind="quote")
    m.observe("request_seconds", 0.8, kind="quote")
    m.observe("request_seconds", 0.8, kind="daily")
    merged = m.histogram("request_seconds")
    assert merged is not None and merged.n == 100
    assert merged.quantile(0.5) == 0.0025 and merged.quantile(0.99) == 1.0
    snap = m.snapshot()["latency"]["request_seconds"]["kind=quote"]
    assert snap["count"] == 99 and snap["p50_s"] == 0.0025


def test_prometheus_text_is_well_formed():
    m = Metrics()
    m.inc("kis_calls_total", tr_id="FHKST11300006", outcome='we"ird\nvalue')
    m.observe("kis_call_seconds", 0.03, tr_id="FHKST11300006")
    m.set_gauge("custom_gauge", 3, kind="x")
    text = m.prometheus({'queue_depth{kind="quote"}': 12, "breaker_open": 0})
    sample = re.compile(r'^kisgw_[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? [-+0-9.e]+$|^kisgw_[a-z_]+ [-+0-9.eInf]+$')
    for line in text.strip().splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert "# TYPE kisgw_kis_calls_total counter" in text
    assert "# TYPE kisgw_kis_call_seconds histogram" in text
    assert "# TYPE kisgw_queue_depth gauge" in text
    assert 'kisgw_queue_depth{kind="quote"} 12' in text
    assert 'kisgw_custom_gauge{kind="x"} 3' in text
    assert 'outcome="we\\"ird\\nvalue"' in text
    assert text.count("# TYPE kisgw_kis_calls_total") == 1


def test_cache_hit_ratio_counts_fresh_over_all_quote_results():
    m = Metrics()
    assert cache_hit_ratio(m) is None
    m.inc("symbol_results_total", 3, kind="quote", status="fresh")
    m.inc("symbol_results_total", 1, kind="quote", status="stale")
    m.inc("symbol_results_total", 5, kind="daily", status="error")
    assert cache_hit_ratio(m) == 0.75


def test_counting_is_thread_safe():
    m = Metrics()

    def work():
        for _ in range(2000):
            m.inc("c", kind="quote")
            m.observe("request_seconds", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.value("c", kind="quote") == 8000
    assert m.histogram("request_seconds").n == 8000


def test_gateway_gauges_read_queue_limiter_breaker_and_token(make_gateway):
    gw = make_gateway(TASK_QUEUE="inline://")
    got = gw.reader.get("quote", ["005930", "000660"], deadline_s=3.0)
    assert {r.status for r in got.values()} == {"fresh"}
    gw.metrics.inc("symbol_results_total", 2, kind="quote", status="fresh")
    gauges = status.gauges(gw, status.read(gw), gw.metrics)  # what /metrics shows, from one status read
    assert gauges["redis_up"] == 1.0 and gauges["breaker_open"] == 0.0
    assert gauges["limiter_budget"] == 17 and gauges["limiter_effective_budget"] == 17
    assert gauges['queue_depth{kind="quote"}'] == 0
    assert gauges['limiter_grants_last_second{call_class="quotes"}'] >= 1  # the multi-quote just made
    assert gauges["cache_hit_ratio"] == 1.0
    assert 80_000 < gauges["token_expires_in_seconds"] <= 86_400
    text = gw.metrics.prometheus(gauges)
    assert 'kisgw_kis_calls_total{outcome="ok",tr_id="FHKST11300006"} 1' in text
    assert "kisgw_token_expires_in_seconds" in text
