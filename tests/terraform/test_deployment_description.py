"""The deployment description (shared/deployment.py) is the one source of Terraform's per-function table and of
the local stack's processes and role checks: changing a function's secret or role changes both."""

from __future__ import annotations

import json

import pytest
from tf_helpers import TF_DIR

from shared.cloud.identity import RoleCheck
from shared.config import load_settings
from shared.deployment import FUNCTIONS, INVOKERS, functions, role_table, secret_id, service_account_email, tfvars
from shared.localstack import function_env

KIS_ONLY = {"kis_app_key", "kis_app_secret", "kis_account_no", "kis_token"}


def stack_plan(fns):
    """What the local stack gives each function: its env and the role checks of its stand-ins."""
    base = {"REDIS_URL": "redis://x", "KIS_APP_KEY": "leaked-if-passed", "GATEWAY_API_KEY_PEPPER": "p"}
    values = {"kis_app_key": "app-key-value", "kis_app_secret": "s", "kis_account_no": "5000000001",
              "api_keys": "pepper", "alert_webhook": "https://hook"}
    invokers = {k: service_account_email(v, "kisgw", "p") for k, v in INVOKERS.items()}
    envs = {name: function_env(f, base, values, url=f"http://fn/{name}", email=f"{name}@p", invokers=invokers,
                               credential="cred", dev_api_key="dev") for name, f in fns.items()}
    roles = RoleCheck(lambda token, aud: {}, role_table(fns, project="p"))
    return envs, roles


def test_generated_tfvars_hold_the_description(gen_tfvars):
    generated = json.loads((TF_DIR / "generated.auto.tfvars.json").read_text())
    assert generated["functions"] == tfvars()
    assert gen_tfvars.generate(load_settings({}))["functions"] == generated["functions"]


def test_changing_a_secret_changes_terraform_and_the_local_stack(gen_tfvars):
    changed = functions({"quotes": {"secrets": ("api_keys", "kis_app_key")}})
    before = gen_tfvars.generate(load_settings({}))["functions"]["quotes"]
    after = gen_tfvars.generate(load_settings({}), changed)["functions"]["quotes"]
    assert "kis_app_key" not in before["secrets"] and "kis_app_key" in after["secrets"]

    quotes_sa = service_account_email("fn-quotes", "kisgw", "p")
    envs, roles = stack_plan(functions())
    assert "KIS_APP_KEY" not in envs["quotes"]
    assert not roles.allowed(quotes_sa, "secrets.access", secret_id("kis_app_key"))
    envs, roles = stack_plan(changed)
    assert envs["quotes"]["KIS_APP_KEY"] == "app-key-value"
    assert roles.allowed(quotes_sa, "secrets.access", secret_id("kis_app_key"))


def test_changing_a_role_changes_terraform_and_the_local_stack(gen_tfvars):
    changed = functions({"quotes": {"firestore": "rw", "request_refresh": True},
                         "drain": {"token": "write"}, "refresh_token": {"token": "read"}})
    doc = gen_tfvars.generate(load_settings({}), changed)["functions"]
    assert doc["quotes"]["firestore"] == "rw" and doc["quotes"]["request_refresh"] is True
    assert doc["drain"]["token"] == "write" and doc["refresh_token"]["token"] == "read"

    drain_sa = service_account_email("fn-drain", "kisgw", "p")
    refresh_sa = service_account_email("fn-refresh-token", "kisgw", "p")
    quotes_sa = service_account_email("fn-quotes", "kisgw", "p")
    _, roles = stack_plan(functions())
    assert roles.allowed(refresh_sa, "versions.write", secret_id("kis_token"))
    assert not roles.allowed(drain_sa, "versions.write", secret_id("kis_token"))
    assert not roles.allowed(quotes_sa, "tasks.create", "kisgw-token-refresh")
    _, roles = stack_plan(changed)
    assert roles.allowed(drain_sa, "versions.write", secret_id("kis_token"))
    assert not roles.allowed(refresh_sa, "versions.write", secret_id("kis_token"))
    assert roles.allowed(quotes_sa, "tasks.create", "kisgw-token-refresh")


def test_least_privilege_of_the_description():
    fns = functions()
    for name in ("quotes", "daily_prices", "symbol_info", "index_quotes", "health", "stats", "openapi",
                 "dashboard", "metrics", "preload"):
        f = fns[name]
        assert not KIS_ONLY & set(f.all_secrets), name
        assert f.firestore in ("", "ro") and f.token == "none" and not f.kis, name
    assert {n for n, f in fns.items() if f.kis} == {"orders", "balance", "legacy_api", "drain", "refresh_token"}
    assert [n for n, f in fns.items() if f.token == "write"] == ["refresh_token"]
    assert all(not f.public for f in fns.values() if any(p.startswith("/internal") for p in f.paths))
    assert fns["legacy_api"].paths == ("/api/*",)
    # Terraform's function table is exactly the description's.
    assert set(tfvars()) == {f.name for f in FUNCTIONS}


def test_the_description_refuses_an_internal_path_on_a_public_function():
    with pytest.raises(ValueError, match="internal"):
        functions({"legacy_api": {"paths": ("/api/*", "/internal/drain")}})


def test_the_asgi_flag_reaches_terraform_and_the_local_stack(gen_tfvars, tf):
    changed = functions({"orders": {"asgi": True}})  # orders is synchronous (WSGI) in the description
    assert gen_tfvars.generate(load_settings({}), changed)["functions"]["orders"]["asgi"] is True
    envs, _ = stack_plan(changed)
    assert envs["orders"]["FUNCTION_USE_ASGI"] == "true"  # functions-framework's --asgi
    assert "FUNCTION_USE_ASGI" not in stack_plan(functions())[0]["orders"]
    assert stack_plan(functions())[0]["quotes"]["FUNCTION_USE_ASGI"] == "true"  # the async read path
    assert "FUNCTION_USE_ASGI" in tf.text["locals.tf"] and "f.asgi" in tf.text["locals.tf"]
