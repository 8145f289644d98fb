"""The Terraform configuration, checked offline: parsing, entry-point parity, secrets, Redis, queues,
scheduler, fmt and checkov."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tf_helpers import ROOT, TF_DIR, attr, blocks, load_tf

# The lead's planned entry points; used only while functions/main.py does not exist.
PLANNED_ENTRY_POINTS = {
    "quotes", "daily_prices", "symbol_info", "index_quotes", "orders", "balance", "health", "stats", "metrics",
    "legacy_api", "drain", "refresh_token", "preload", "dashboard",
}
INTERNAL = {"metrics", "drain", "refresh_token", "preload"}
SECRET_ENV = {"KIS_APP_KEY", "KIS_APP_SECRET", "KIS_ACCOUNT_NO", "GATEWAY_API_KEY_PEPPER", "ALERT_WEBHOOK_URL",
              "REDIS_URL"}


def same(expression: object, expected: str) -> bool:
    """Compare HCL expressions as text, ignoring the spacing each parser version renders differently."""
    return re.sub(r"\s+", "", str(expression)) == re.sub(r"\s+", "", expected)


def http_entry_points(main_py: Path) -> set[str]:
    """Functions decorated with `@functions_framework.http` (or `http` imported from it), or with
    `@aio.http` (functions-framework's ASGI mode, on an `async def`)."""
    tree = ast.parse(main_py.read_text())
    imported_http = any(
        isinstance(n, ast.ImportFrom) and n.module == "functions_framework" and any(a.name == "http" for a in n.names)
        for n in ast.walk(tree))
    found = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            target = dec.func if isinstance(dec, ast.Call) else dec
            qualified = (isinstance(target, ast.Attribute) and target.attr == "http"
                         and isinstance(target.value, ast.Name) and target.value.id in ("functions_framework", "aio"))
            bare = imported_http and isinstance(target, ast.Name) and target.id == "http"
            if qualified or bare:
                found.add(node.name)
    return found


def expected_entry_points() -> set[str]:
    main_py = ROOT / "functions" / "main.py"
    return http_entry_points(main_py) if main_py.exists() else PLANNED_ENTRY_POINTS


def test_every_tf_file_parses():
    files = sorted(TF_DIR.glob("*.tf"))
    assert len(files) >= 10
    for path in files:
        doc = load_tf(path)
        assert doc, f"{path.name} parsed to nothing"


def test_entry_point_finder_reads_decorators(tmp_path):
    src = tmp_path / "main.py"
    src.write_text("import functions_framework\nfrom functions_framework import http\n\n"
                   "@functions_framework.http\ndef a(request):\n    return ''\n\n"
                   "@http\ndef b(request):\n    return ''\n\n"
                   "def helper(request):\n    return ''\n")
    assert http_entry_points(src) == {"a", "b"}


def description_functions():
    """Terraform's per-function table: var.functions from generated.auto.tfvars.json (shared/deployment.py)."""
    return json.loads((TF_DIR / "generated.auto.tfvars.json").read_text())["functions"]


def test_every_entry_point_has_a_function_and_vice_versa(tf):
    assert same(tf.locals()["functions"], "${var.functions}")
    functions = description_functions()
    fn = tf.resource("google_cloudfunctions2_function", "gateway")
    assert same(attr(fn, "for_each"), "${local.functions}")
    build = blocks(fn, "build_config")[0]
    assert same(attr(build, "entry_point"), "${each.key}")
    expected = expected_entry_points()
    assert set(functions) == expected, (
        f"no function resource for {sorted(expected - set(functions))}; "
        f"function resources without an entry point in functions/main.py: {sorted(set(functions) - expected)}")


def test_ingress_public_only_for_frontend_endpoints(tf):
    functions = description_functions()
    assert {k for k, f in functions.items() if not f["public"]} == INTERNAL & set(functions)
    service = blocks(tf.resource("google_cloudfunctions2_function", "gateway"), "service_config")[0]
    assert same(attr(service, "ingress_settings"), '${each.value.public ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"}')
    public = tf.resource("google_cloud_run_v2_service_iam_member", "public")
    assert "f.public" in attr(public, "for_each") and attr(public, "member") == "allUsers"
    # Internal functions are invoked only with OIDC by their dedicated identities.
    drain = tf.resource("google_cloud_run_v2_service_iam_member", "drain_from_tasks")
    assert same(attr(drain, "member"), "${google_service_account.tasks_invoker.member}")
    sched = tf.resource("google_cloud_run_v2_service_iam_member", "scheduled_from_scheduler")
    assert same(attr(sched, "member"), "${google_service_account.scheduler_invoker.member}")


def test_one_service_account_per_function(tf):
    sa = tf.resource("google_service_account", "function")
    assert same(attr(sa, "for_each"), "${local.functions}")
    service = blocks(tf.resource("google_cloudfunctions2_function", "gateway"), "service_config")[0]
    assert same(attr(service, "service_account_email"), "${google_service_account.function[each.key].email}")
    # No project-wide grants beyond logs and Firestore (whose IAM is project-wide only).
    roles = {attr(b, "role") for b in tf.resources("google_project_iam_member").values()}
    assert not any("admin" in r or r in ("roles/editor", "roles/owner") for r in roles if not r.startswith("${"))


def test_waiting_functions_serve_many_requests_per_instance(tf):
    service = blocks(tf.resource("google_cloudfunctions2_function", "gateway"), "service_config")[0]
    assert same(attr(service, "max_instance_request_concurrency"), "${local.function_concurrency[each.key]}")
    variables = tf.variables()
    assert attr(variables["waiting_concurrency"], "default") >= 80
    assert attr(variables["function_cpu"], "default") == "1"
    assert "measured" in attr(variables["function_memory"], "description").lower()  # sized from the benchmark
    assert "THREADS" in attr(service, "environment_variables")


def test_no_secret_in_plain_environment_variables(tf, gen_tfvars):
    service = blocks(tf.resource("google_cloudfunctions2_function", "gateway"), "service_config")[0]
    plain = attr(service, "environment_variables")
    for name in SECRET_ENV:
        assert name not in plain
    assert not re.search(r"secret_version|auth_string|redis_url", plain)
    deploy_env = tf.locals()["deploy_env"]
    assert not SECRET_ENV & set(deploy_env)
    assert not any("auth_string" in str(v) or "secret_version" in str(v) for v in deploy_env.values())
    generated = json.loads((TF_DIR / "generated.auto.tfvars.json").read_text())
    assert not SECRET_ENV & set(generated["gateway_env"])
    assert not gen_tfvars.secret_env_names() & set(generated["gateway_env"])
    # The variable itself refuses secrets, whatever file sets it.
    validation = " ".join(str(attr(v, "condition")) for v in blocks(tf.variables()["gateway_env"], "validation"))
    assert all(name in validation for name in SECRET_ENV)


def test_secrets_reach_functions_through_secret_manager(tf):
    service = blocks(tf.resource("google_cloudfunctions2_function", "gateway"), "service_config")[0]
    dyn = blocks(service, "dynamic")[0]["secret_environment_variables"]
    assert same(attr(dyn, "for_each"), "${local.secret_env_bindings[each.key]}")
    content = blocks(dyn, "content")[0]
    assert same(attr(content, "key"), "${secret_environment_variables.value.env}")
    secrets = tf.locals()["secrets"]
    assert {s["env"] for s in secrets.values()} >= SECRET_ENV
    assert {"kis_token", "redis_ca"} <= set(secrets)
    # The Redis URL with its AUTH string is only ever written into Secret Manager.
    uses = [name for name, text in tf.text.items() if "local.redis_url" in text]
    assert uses == ["secrets.tf"]
    version = tf.resource("google_secret_manager_secret_version", "redis_url")
    assert same(attr(version, "secret_data"), "${local.redis_url}")
    assert not {n for n in tf.variables() if re.search(r"app_key|app_secret|account_no|token|api_key", n)}


def test_redis_has_auth_and_tls_on_a_private_network(tf):
    redis = tf.resource("google_redis_instance", "cache")
    assert attr(redis, "auth_enabled") is True
    assert attr(redis, "transit_encryption_mode") == "SERVER_AUTHENTICATION"
    assert attr(redis, "connect_mode") == "PRIVATE_SERVICE_ACCESS"
    assert same(attr(redis, "authorized_network"), "${google_compute_network.gateway.id}")
    assert tf.locals()["redis_url"].startswith("${format(\"rediss://")
    connector = tf.resource("google_vpc_access_connector", "gateway")
    assert same(attr(connector, "network"), "${google_compute_network.gateway.name}")
    service = blocks(tf.resource("google_cloudfunctions2_function", "gateway"), "service_config")[0]
    assert same(attr(service, "vpc_connector"), "${google_vpc_access_connector.gateway.id}")


def test_queues_take_rate_and_retry_from_generated_variables(tf):
    queue = tf.resource("google_cloud_tasks_queue", "call_class")
    assert same(attr(queue, "for_each"), "${var.call_queues}")
    assert same(attr(queue, "name"), "${local.queue_names[each.key]}")
    rate = blocks(queue, "rate_limits")[0]
    assert same(attr(rate, "max_dispatches_per_second"), "${each.value.max_dispatches_per_second}")
    assert same(attr(rate, "max_concurrent_dispatches"), "${each.value.max_concurrent_dispatches}")
    retry = blocks(queue, "retry_config")[0]
    assert same(attr(retry, "max_attempts"), "${each.value.max_attempts}")
    assert same(attr(retry, "min_backoff"), "${each.value.min_backoff_s}s")
    assert same(attr(retry, "max_backoff"), "${each.value.max_backoff_s}s")
    assert same(attr(retry, "max_doublings"), "${each.value.max_doublings}")
    assert same(tf.locals()["queue_names"], "${{for c, q in var.call_queues : c => q.queue_id}}")


def test_scheduler_jobs_run_in_seoul_against_known_functions(tf):
    job = tf.resource("google_cloud_scheduler_job", "gateway")
    assert same(attr(job, "for_each"), "${var.schedules}")
    assert same(attr(job, "time_zone"), "${each.value.time_zone}")
    assert same(attr(job, "schedule"), "${each.value.cron}")
    target = blocks(job, "http_target")[0]
    assert blocks(target, "oidc_token"), "scheduled calls carry an OIDC token"
    warm = tf.resource("google_cloud_scheduler_job", "warm_instances")
    assert attr(warm, "time_zone") == "Asia/Seoul"
    generated = json.loads((TF_DIR / "generated.auto.tfvars.json").read_text())
    functions = description_functions()
    for name, s in generated["schedules"].items():
        assert s["time_zone"] == "Asia/Seoul", name
        assert s["function"] in functions and not functions[s["function"]]["public"], name


def test_variables_are_described_and_validated(tf):
    variables = tf.variables()
    for name, body in variables.items():
        assert str(attr(body, "description", "")).strip(), f"variable {name} has no description"
    for name in ("project_id", "region", "kis_env", "kis_limit_profile", "gateway_budget", "call_queues",
                 "schedules", "gateway_env", "function_memory", "waiting_concurrency"):
        assert blocks(variables[name], "validation"), f"variable {name} has no validation"
    assert attr(variables["region"], "default") == "asia-northeast3"
    budget_rule = attr(blocks(variables["gateway_budget"], "validation")[0], "condition")
    assert "var.kis_limit" in budget_rule


def test_provider_and_terraform_versions_are_pinned(tf):
    (block,) = tf.terraform_blocks()
    assert attr(block, "required_version").startswith(">=")
    providers = blocks(block, "required_providers")[0]
    google = attr(providers, "google")
    assert google["source"] == "hashicorp/google" and google["version"].startswith("~>")
    assert any("google" in p for p in tf.providers())


def test_firestore_monitoring_and_outputs_exist(tf):
    types = tf.resource_types()
    assert {"google_firestore_database", "google_logging_metric", "google_monitoring_alert_policy",
            "google_secret_manager_secret", "google_vpc_access_connector"} <= types
    events = set(tf.locals()["alert_events"])
    assert events == {"breaker_open", "token_refresh_failed", "rate_limit_errors"}
    # The names the gateway logs (shared/observability/alerts.py and the token manager).
    sources = "".join(p.read_text() for p in (ROOT / "shared").rglob("*.py"))
    for event in events:
        assert f'"{event}"' in sources, f"the gateway never logs {event}"
    outputs = tf.outputs()
    assert {"function_urls", "public_urls", "queue_names", "drain_url"} <= set(outputs)


def _terraform() -> str:
    path = shutil.which("terraform")
    if not path:
        pytest.skip("terraform binary not on PATH: fmt check needs it")
    return path


def test_terraform_fmt_check():
    result = subprocess.run([_terraform(), "fmt", "-check", "-diff", "-no-color", str(TF_DIR)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _checkov() -> list[str]:
    # checkov lives in its own virtualenv (scripts/bootstrap.sh makes it): its fork of the hcl2 parser would
    # otherwise replace python-hcl2 in ours.
    tools = Path(__file__).resolve().parents[2] / ".tools" / "checkov" / "bin" / "checkov"
    path = str(tools) if tools.exists() else (shutil.which("checkov") or str(Path(sys.executable).with_name("checkov")))
    if not Path(path).exists():
        pytest.skip("checkov not installed: static policy checks need it")
    return [path]


@pytest.mark.timeout(120)
def test_checkov_finds_no_failed_check():
    result = subprocess.run(
        [*_checkov(), "-d", str(TF_DIR), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=110, cwd=ROOT)
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    # Every skip carries its reason next to the resource.
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]
