"""scripts/gen_tfvars.py: the Terraform numbers are the ones shared/config.py computes."""

from __future__ import annotations

import json

import pytest
from tf_helpers import TF_DIR

from shared import budget
from shared.budget import CALL_CLASSES
from shared.cloud.tasks import queue_specs
from shared.config import load_settings
from shared.schedules import schedules


def test_queues_equal_queue_specs_of_the_settings(gen_tfvars):
    settings = load_settings({})
    doc = gen_tfvars.generate(settings)
    specs = {s.call_class: s for s in queue_specs(settings)}
    assert set(doc["call_queues"]) == set(CALL_CLASSES)
    for call_class, q in doc["call_queues"].items():
        spec = specs[call_class]
        assert q == {
            "queue_id": spec.queue_id,
            "max_dispatches_per_second": spec.max_dispatches_per_second,
            "max_concurrent_dispatches": spec.max_concurrent_dispatches,
            "max_attempts": spec.max_attempts,
            "min_backoff_s": spec.min_backoff_s,
            "max_backoff_s": spec.max_backoff_s,
            "max_doublings": spec.max_doublings,
        }
        assert q["max_dispatches_per_second"] == budget.queue_rate(settings, call_class)
        assert q["max_concurrent_dispatches"] == budget.queue_concurrency(settings, call_class)


def test_scheduler_jobs_equal_the_shared_schedules(gen_tfvars):
    settings = load_settings({"PRELOAD_TIME_KST": "07:45"})
    jobs = gen_tfvars.generate(settings)["schedules"]
    expected = schedules(settings)
    assert set(jobs) == {s.name for s in expected}
    for s in expected:
        job = jobs[s.name]
        assert (job["cron"], job["time_zone"], job["target"], job["description"], job["trading_days_only"]) == (
            s.cron, s.time_zone, s.target, s.description, s.trading_days_only)
    assert jobs["preload"]["cron"].startswith("45 7")
    assert jobs["refresh-token"]["function"] == "refresh_token"


def test_gateway_budget_from_env_changes_queue_rates(gen_tfvars):
    default = gen_tfvars.generate(load_settings({}))
    lower = gen_tfvars.generate(load_settings({"GATEWAY_BUDGET": "10"}))
    assert default["gateway_budget"] == 17 and lower["gateway_budget"] == 10
    assert lower["gateway_env"]["GATEWAY_BUDGET"] == "10"
    assert lower["call_queues"]["quotes"]["max_dispatches_per_second"] == 6.0
    assert default["call_queues"]["quotes"]["max_dispatches_per_second"] == 10.2
    for call_class in CALL_CLASSES:
        assert (lower["call_queues"][call_class]["max_dispatches_per_second"]
                < default["call_queues"][call_class]["max_dispatches_per_second"])


def test_limit_profile_and_environment_flow_through(gen_tfvars):
    doc = gen_tfvars.generate(load_settings({"KIS_ENV": "paper", "KIS_LIMIT_PROFILE": "kis-legacy"}))
    assert (doc["kis_env"], doc["kis_limit_profile"], doc["kis_limit"], doc["gateway_budget"]) == (
        "paper", "kis-legacy", 2, 1)
    assert doc["batch_size"] == 1  # paper keys have no multi-quote
    assert doc["gateway_env"]["KIS_ENV"] == "paper"


def test_runtime_env_reproduces_the_settings_and_holds_no_secret(gen_tfvars):
    env = {"GATEWAY_BUDGET": "12", "QUOTE_TTL_S": "1.5", "GATEWAY_BATCH_SIZE": "25", "PRELOAD_SYMBOLS": "005930",
           "KIS_APP_KEY": "PSk3yValue0001", "KIS_APP_SECRET": "s3cretValue0001", "KIS_ACCOUNT_NO": "12345678-01",
           "ALERT_WEBHOOK_URL": "https://hooks.invalid/T000/B000/XXXX", "REDIS_URL": "rediss://:pw@10.0.0.3:6378/0"}
    settings = load_settings(env)
    doc = gen_tfvars.generate(settings)
    text = gen_tfvars.render(doc)
    for value in ("PSk3yValue0001", "s3cretValue0001", "1234567801", "12345678-01", "hooks.invalid", ":pw@"):
        assert value not in text
    # The functions start with these variables: they must give back the same numbers Terraform used.
    again = load_settings(doc["gateway_env"])
    assert again.budget == 12 and again.quote_ttl_s == 1.5 and again.batch_size == 25
    assert again.preload_symbols == ("005930",)
    assert gen_tfvars.generate(again) == doc


def test_committed_tfvars_are_consistent_with_the_config(gen_tfvars):
    committed = json.loads((TF_DIR / "generated.auto.tfvars.json").read_text())
    # Whatever environment it was generated with, regenerating from its own runtime settings gives it back,
    # so queue rates, schedules and the functions' environment cannot disagree.
    assert gen_tfvars.generate(load_settings(committed["gateway_env"])) == committed


def test_check_mode_reports_a_stale_file(gen_tfvars, tmp_path, capsys):
    out = tmp_path / "generated.auto.tfvars.json"
    assert gen_tfvars.main(["--out", str(out)], env={}) == 0
    assert gen_tfvars.main(["--out", str(out), "--check"], env={}) == 0
    assert gen_tfvars.main(["--out", str(out), "--check"], env={"GATEWAY_BUDGET": "5"}) == 1
    assert "stale" in capsys.readouterr().err


def test_bad_settings_stop_generation(gen_tfvars, tmp_path, capsys):
    out = tmp_path / "x.json"
    assert gen_tfvars.main(["--out", str(out)], env={"GATEWAY_BUDGET": "19"}) == 2
    assert not out.exists()
    assert "GATEWAY_BUDGET" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["1", "17"])
def test_generated_values_pass_the_terraform_validations(gen_tfvars, budget):
    # Mirrors the validation blocks of variables.tf that terraform cannot evaluate offline.
    doc = gen_tfvars.generate(load_settings({"GATEWAY_BUDGET": budget}))
    assert 1 <= doc["gateway_budget"] <= doc["kis_limit"]
    for q in doc["call_queues"].values():
        assert 0 < q["max_dispatches_per_second"] <= 500 and 1 <= q["max_concurrent_dispatches"] <= 5000
        assert q["max_attempts"] >= 1 and 0 <= q["min_backoff_s"] <= q["max_backoff_s"]
    for s in doc["schedules"].values():
        assert s["time_zone"] == "Asia/Seoul" and s["target"].startswith("/")


def test_committed_tfvars_are_the_defaults(gen_tfvars):
    # The repository carries the defaults; a deployment regenerates from its own environment (DEPLOY.md).
    committed = json.loads((TF_DIR / "generated.auto.tfvars.json").read_text())
    assert committed == gen_tfvars.generate(load_settings({})), "run: python scripts/gen_tfvars.py (clean env)"
