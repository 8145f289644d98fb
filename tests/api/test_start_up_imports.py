"""Start-up cost of the entry points: the read functions do not load the Cloud Tasks, Firestore or Secret
Manager client libraries (gRPC, protobuf, google-auth) until a request needs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_entry_points_loads_no_cloud_client_library():
    code = ("import sys, functions.main; "
            "print(','.join(m for m in ('grpc', 'google.cloud.tasks_v2', 'google.cloud.firestore', "
            "'google.cloud.secretmanager', 'google.auth') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == ""


def test_a_cloud_tasks_trigger_builds_its_client_on_first_use(monkeypatch):
    from shared import backends
    from shared.cloud import tasks
    from shared.config import load_settings

    made = []

    class FakeClient:
        def create_task(self, parent, task, timeout):
            made.append(task.name)

    monkeypatch.setattr(tasks, "tasks_client", lambda settings, credential=None: made.append("client") or FakeClient())
    settings = load_settings({"TASK_QUEUE": "cloudtasks://127.0.0.1:1", "TASK_TARGET_URL": "http://drain.example",
                              "GCP_PROJECT": "p"})
    trigger = backends.trigger_from_settings(settings)
    assert made == []  # nothing built at start-up
    assert trigger.request_drain("quote", "quotes", 7)
    assert made[0] == "client" and made[1].endswith("/tasks/drain-quote-7")


# What a function's start-up (importing the entry points and building its gateway, as the first request does)
# must not load: each costs tens to hundreds of milliseconds before a first answer that does not need it. The
# KIS client's HTTP stack loads with the first KIS call, the holiday package only for a year outside the
# calendar's table, the input models (pydantic) with the first request that validates input, the answer models
# with /openapi.json, the Cloud client libraries with the first request that reads Firestore or enqueues.
# Flask is not listed: functions-framework's package imports it, also for its ASGI mode.
HEAVY = ("requests", "holidays", "pydantic", "grpc", "google.auth", "google.protobuf", "google.api_core",
         "google.cloud.firestore", "google.cloud.tasks_v2", "google.cloud.secretmanager", "shared.api.models",
         "shared.api.answer_models", "shared.api.openapi")
# Settings as deployed: the breaker and the stores in Firestore, drains through Cloud Tasks, the token in Secret
# Manager (addresses that answer nothing: start-up must not need them).
DEPLOYED = {"GATEWAY_MODE": "local", "BREAKER_STORE": "firestore://breakers",
            "IDEMPOTENCY_STORE": "firestore://order_idempotency", "TASK_QUEUE": "cloudtasks://127.0.0.1:9",
            "TASK_TARGET_URL": "http://127.0.0.1:9", "TOKEN_STORE": "secretmanager://kisgw-kis-token",
            "SECRET_MANAGER_ENDPOINT": "127.0.0.1:9", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "GCP_PROJECT": "p",
            "MARKET_HOURS_AWARE": "true"}
START_UP = ("import sys, functions.main\n"
            "from shared.gateway import get_gateway\n"
            "assert get_gateway().prepared.wait(60)\n"
            "print(','.join(m for m in {heavy!r} if m in sys.modules))\n")


# Loaded at start-up (in the background, beside the first requests) by a function whose first read may miss: the
# breaker's Firestore client and the input models, so a cold miss is still answered fresh; not the rest.
PREPARED = {"pydantic", "shared.api.models", "grpc", "google.auth", "google.protobuf", "google.api_core",
            "google.cloud.firestore", "requests"}  # google-auth loads requests


def _start_up(function: str) -> set[str]:
    env = {**os.environ, **DEPLOYED, "GATEWAY_FUNCTION": function, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", START_UP.format(heavy=HEAVY)], cwd=str(ROOT), env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return {m for m in out.stdout.strip().split(",") if m}


@pytest.mark.parametrize("function", ["health", "stats", "metrics", "dashboard", "openapi", "symbol_search"])
def test_a_function_s_start_up_loads_no_heavy_module_it_does_not_need(function):
    assert _start_up(function) == set(), f"{function} loaded at start-up"


@pytest.mark.parametrize("function", ["quotes", "daily_prices", "symbol_info", "index_quotes", "preload"])
def test_a_read_function_prepares_what_a_miss_needs_and_nothing_else(function):
    loaded = _start_up(function)
    assert loaded - PREPARED == set(), f"{function} loaded at start-up"
    if function != "preload":  # no Firestore grant
        assert "google.cloud.firestore" in loaded and "shared.api.models" in loaded


def test_the_heavy_modules_are_loaded_when_first_needed():
    """The check above can fail: the same probe sees each module once the code that needs it has run."""
    code = ("import sys, functions.main\n"
            "from shared.api import handlers\n"
            "from shared.api.routes import _document\n"
            "from shared.kis.http import _pooled_session\n"
            "from shared.market.calendar import KRXCalendar\n"
            "handlers.read_query_model('quote'); _document(None); _pooled_session()\n"
            "KRXCalendar().holidays_of(2100)\n"
            "print(','.join(m for m in {heavy!r} if m in sys.modules))\n").format(
                heavy=("pydantic", "shared.api.models", "shared.api.answer_models", "requests", "holidays"))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "pydantic,shared.api.models,shared.api.answer_models,requests,holidays"


def test_a_read_function_answers_while_it_prepares_for_misses():
    """The build returns before the background preparation has loaded the Firestore client; it loads after."""
    code = ("import sys, functions.main\n"
            "from shared.gateway import get_gateway\n"
            "gw = get_gateway()\n"
            "during = 'google.cloud.firestore' in sys.modules\n"
            "assert gw.prepared.wait(60)\n"
            "print(during, 'google.cloud.firestore' in sys.modules)\n")
    assert _in_quotes_function(code) == ["False", "True"]


def test_what_a_function_built_is_left_out_of_garbage_collections():
    """A full collection no longer walks the modules, clients and gateway the process lives on (each one stopped
    the event loop 60-140 ms with the client libraries loaded): once prepared, they are frozen."""
    code = ("import gc, sys, functions.main\n"
            "from shared.gateway import get_gateway\n"
            "gw = get_gateway()\n"
            "assert gw.prepared.wait(60)\n"
            "tracked = {id(o) for o in gc.get_objects()}\n"
            "print(gc.get_freeze_count() > 10000, id(gw) in tracked, id(gw.reader) in tracked)\n")
    assert _in_quotes_function(code) == ["True", "False", "False"]


def test_many_live_objects_set_off_no_full_collection_from_the_start():
    """A cold start's first request imports the input models, and a thousand requests waiting together are a few
    hundred thousand live objects: with the interpreter's default thresholds both set off full collections
    (30-40 ms and 40-95 ms of a stopped event loop), which walk everything the process has built. From the
    entry point's import on, and after the preparation, none."""
    code = ("import gc, functions.main\n"
            "from shared.gateway import get_gateway\n"
            "full = []\n"
            "gc.callbacks.append(lambda phase, info: phase == 'stop' and info['generation'] == 2 and full.append(1))\n"
            "held = [{'n': i} for i in range(300_000)]\n"
            "print(len(full))\n"
            "assert get_gateway().prepared.wait(60)\n"
            "full.clear()\n"
            "held2 = [{'n': i} for i in range(300_000)]\n"
            "print(len(full))\n")
    assert _in_quotes_function(code) == ["0", "0"]


def _in_quotes_function(code: str) -> list[str]:
    """What `code` prints, run in a fresh process with the deployed quotes function's environment."""
    env = {**os.environ, **DEPLOYED, "GATEWAY_FUNCTION": "quotes", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()
