"""/stats and /metrics of one function show the figures of every function process (published in Redis)."""

import time

from shared.api import fleet


def test_a_function_sees_the_counters_of_the_others(make_gateway):
    drain_like = make_gateway(GATEWAY_FUNCTION="stats", GATEWAY_API_KEY_PEPPER="pepper")
    reporter = make_gateway(GATEWAY_FUNCTION="health")
    drain_like.metrics.inc("kis_calls_total", 3, tr_id="FHKST11300006", outcome="ok")
    drain_like.metrics.observe("request_seconds", 0.05, kind="quote")
    reporter.metrics.inc("kis_calls_total", 1, tr_id="FHKST11300006", outcome="ok")
    fleet.maybe_publish(drain_like)
    merged = fleet.view(reporter)
    assert merged.value("kis_calls_total", tr_id="FHKST11300006", outcome="ok") == 4
    assert merged.histogram("request_seconds", kind="quote").n == 1
    assert "kisgw_kis_calls_total" in merged.prometheus()
    # A process does not count itself twice once it has published too.
    fleet.maybe_publish(reporter)
    assert fleet.view(reporter).value("kis_calls_total", tr_id="FHKST11300006", outcome="ok") == 4


def test_the_last_figures_before_a_quiet_spell_are_published_without_another_request(make_gateway):
    worker = make_gateway(GATEWAY_FUNCTION="stats", GATEWAY_API_KEY_PEPPER="pepper")
    reader = make_gateway(GATEWAY_FUNCTION="health")
    worker.metrics.inc("kis_calls_total", 1, tr_id="TTTC8434R", outcome="ok")
    fleet.maybe_publish(worker)  # published now
    worker.metrics.inc("kis_calls_total", 1, tr_id="TTTC8434R", outcome="ok")
    fleet.maybe_publish(worker)  # too soon: scheduled, not dropped
    assert fleet.view(reader).value("kis_calls_total", tr_id="TTTC8434R", outcome="ok") == 1
    deadline = time.monotonic() + fleet.PUBLISH_EVERY_S + 3
    while time.monotonic() < deadline:
        if fleet.view(reader).value("kis_calls_total", tr_id="TTTC8434R", outcome="ok") == 2:
            break
        time.sleep(0.1)
    assert fleet.view(reader).value("kis_calls_total", tr_id="TTTC8434R", outcome="ok") == 2
