"""Write terraform/generated.auto.tfvars.json from shared/config.py: the one source of deploy numbers.

The per-function table (ingress, secrets, token access, Firestore access, queues, invokers, env, timeout,
ASGI) comes from the deployment description `shared.deployment`. Queue rates, concurrency and retry settings
come from `shared.cloud.tasks.queue_specs`, scheduler jobs from
`shared.schedules.schedules`, and every other non-secret setting (TTLs, batch size, limit profile, budget and
its shares, deadlines, breaker) is passed to the functions as environment variables, so the deployed
gateway computes exactly the numbers Terraform configured. Secrets never enter this file.

    GATEWAY_BUDGET=10 python scripts/gen_tfvars.py            # writes the file
    python scripts/gen_tfvars.py --check                       # exit 1 when the file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable without an installed checkout
    sys.path.insert(0, str(ROOT))

from shared import deployment  # noqa: E402
from shared.budget import CALL_CLASSES  # noqa: E402
from shared.cloud.tasks import queue_specs, refresh_queue_spec  # noqa: E402
from shared.config import VARIABLES, Settings, SettingsError, load_settings  # noqa: E402
from shared.schedules import schedules  # noqa: E402

OUTPUT = ROOT / "terraform" / "generated.auto.tfvars.json"

# Set by Terraform from the resources it creates (Redis, queues, secrets, URLs), not by the settings file: the
# settings declared with deploy=True in shared/config.py.
DEPLOY_MANAGED_ENV = frozenset(v.env for v in VARIABLES if v.deploy)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def secret_env_names() -> frozenset[str]:
    """Variables whose value is a secret (typed `Secret` in Settings): never plain environment."""
    return frozenset(v.env for v in VARIABLES if v.secret)


def runtime_env(settings: Settings) -> dict[str, str]:
    """Every non-secret, non-deploy-managed setting as the environment the functions start with."""
    secret = secret_env_names()
    defaults = Settings()
    env: dict[str, str] = {}
    for var in VARIABLES:
        if var.env in secret or var.env in DEPLOY_MANAGED_ENV:
            continue
        value = _env_value(getattr(settings, var.attr))
        if value == "" and _env_value(getattr(defaults, var.attr)) == "":
            continue  # unset and empty by default: nothing to pass
        env[var.env] = value
    # The effective budget, explicit: 0 ("limit - 1") would hide the number Terraform configured.
    env["GATEWAY_BUDGET"] = str(settings.budget)
    return dict(sorted(env.items()))


def _field(spec: Any, name: str) -> Any:
    if isinstance(spec, Mapping):
        return spec[name]
    return getattr(spec, name)


def _queue_items(specs: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(specs, Mapping):
        return specs.items()
    return ((_field(s, "call_class"), s) for s in specs)


def call_queues(settings: Settings) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for call_class, spec in _queue_items(queue_specs(settings)):
        out[str(call_class)] = {
            # The gateway names its queues itself (shared/cloud/tasks.py); Terraform creates exactly those.
            "queue_id": str(_field(spec, "queue_id")),
            "max_dispatches_per_second": float(_field(spec, "max_dispatches_per_second")),
            "max_concurrent_dispatches": int(_field(spec, "max_concurrent_dispatches")),
            "max_attempts": int(_field(spec, "max_attempts")),
            "min_backoff_s": float(_field(spec, "min_backoff_s")),
            "max_backoff_s": float(_field(spec, "max_backoff_s")),
            "max_doublings": int(_field(spec, "max_doublings")),
        }
    missing = set(CALL_CLASSES) - set(out)
    if missing:
        raise SettingsError(f"queue_specs() lacks call classes: {', '.join(sorted(missing))}")
    return dict(sorted(out.items()))


def scheduler_jobs(settings: Settings) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for s in schedules(settings):
        jobs[s.name] = {
            "cron": s.cron,
            "time_zone": s.time_zone,
            "target": s.target,
            # The function that serves the target: /internal/refresh-token -> refresh_token.
            "function": s.target.rstrip("/").rsplit("/", 1)[-1].replace("-", "_"),
            "description": s.description,
            "trading_days_only": s.trading_days_only,
        }
    return jobs


def generate(settings: Settings, fns: Mapping[str, deployment.Function] | None = None) -> dict[str, Any]:
    """The tfvars document for `settings` and the deployment description `fns` (plain JSON data, deterministic)."""
    return {
        "kis_env": settings.kis_env,
        "kis_limit_profile": settings.kis_limit_profile,
        "kis_limit": settings.kis_limit,
        "gateway_budget": settings.budget,
        "batch_size": settings.effective_batch_size,
        "request_deadline_s": settings.request_deadline_s,
        "drain_deadline_s": settings.drain_deadline_s,
        "task_dispatch_deadline_s": settings.task_dispatch_deadline_s,
        "call_queues": call_queues(settings),
        "refresh_queue": {k: v for k, v in refresh_queue_spec().as_dict().items() if k != "call_class"},
        "schedules": scheduler_jobs(settings),
        # The deployment description: which function holds which secrets and roles (shared/deployment.py).
        "functions": deployment.tfvars(fns),
        "gateway_env": runtime_env(settings),
    }


def render(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write Terraform variables from shared/config.py")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="tfvars JSON to write")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when the file differs")
    args = parser.parse_args(argv)
    try:
        text = render(generate(load_settings(env)))
    except SettingsError as exc:
        print(f"gen_tfvars: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"gen_tfvars: {args.out} is stale; run scripts/gen_tfvars.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
