"""The one registry of backends chosen by URI (shared/backends.py) and the one composition root (shared/gateway.py):
every backend setting is read by the registry, an unknown scheme stops start-up naming its setting, an adapter's
module is imported only when its scheme is chosen, and the parts are built once, at start-up, by the root."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared import backends
from shared.config import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"TOKEN_STORE": "token_store", "BREAKER_STORE": "breaker_store", "TASK_QUEUE": "task_queue",
            "IDEMPOTENCY_STORE": "idempotency_store"}
HEAVY = ("grpc", "google.cloud.tasks_v2", "google.cloud.firestore", "google.cloud.secretmanager",
         "google.cloud.secretmanager_v1")


def test_the_registry_knows_every_backend_setting_and_port():
    assert {p.setting for p in backends.PORTS.values()} == set(SETTINGS)
    assert set(backends.PORTS) == {"token_store", "breaker", "drain_trigger", "token_refresh", "idempotency",
                                    "api_keys"}
    for port in backends.PORTS.values():  # every listed adapter's factory exists (resolved without building)
        for target in port.adapters.values():
            module, _, name = target.partition(":")
            assert module == "shared.backends" and callable(getattr(backends, name)), target


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_an_unknown_scheme_stops_start_up_naming_the_setting(setting, redis_client, redis_prefix):
    from shared.gateway import build_gateway

    settings = dataclasses.replace(load_settings({"REDIS_PREFIX": redis_prefix, "TASK_QUEUE": "local://"}),
                                   **{SETTINGS[setting]: "vault://somewhere"})
    with pytest.raises(SettingsError, match=re.escape(f"{setting}='vault://somewhere' has an unknown scheme")):
        build_gateway(settings, redis_client=redis_client)
    with pytest.raises(SettingsError, match=setting):
        backends.check(settings)


def test_each_scheme_builds_its_adapter(redis_client, redis_prefix):
    from shared.cloud.inline_trigger import InlineTrigger
    from shared.cloud.token_store import MemoryTokenStore, RedisTokenStore
    from shared.market.breaker_storage import MemoryBreakerStorage, RedisBreakerStorage
    from shared.orders.idempotency import MemoryIdempotencyStore, RedisIdempotencyStore

    mem = load_settings({"TOKEN_STORE": "memory://", "BREAKER_STORE": "memory://", "IDEMPOTENCY_STORE": "memory://",
                         "TASK_QUEUE": "inline://", "REDIS_PREFIX": redis_prefix})
    red = load_settings({"TOKEN_STORE": "redis://", "BREAKER_STORE": "redis://", "IDEMPOTENCY_STORE": "redis://",
                         "TASK_QUEUE": "local://", "REDIS_PREFIX": redis_prefix})
    clients = backends.Clients(redis=redis_client, drain=lambda *_: None)
    assert isinstance(backends.build("token_store", mem), MemoryTokenStore)
    assert isinstance(backends.build("token_store", red, clients), RedisTokenStore)
    assert isinstance(backends.build("breaker", mem), MemoryBreakerStorage)
    assert isinstance(backends.build("breaker", red, clients), RedisBreakerStorage)
    assert isinstance(backends.build("idempotency", mem), MemoryIdempotencyStore)
    assert isinstance(backends.build("idempotency", red, clients), RedisIdempotencyStore)
    inline = backends.build("drain_trigger", mem, clients)
    assert isinstance(inline, InlineTrigger) and not inline._background
    assert isinstance(backends.build("drain_trigger", red, clients), InlineTrigger)
    with pytest.raises(SettingsError, match="TASK_QUEUE"):  # an in-process trigger needs the drain it runs
        backends.build("drain_trigger", red)


def _imported_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    return [m for m in out if m.startswith(HEAVY)]


def test_importing_the_entry_points_loads_no_grpc_cloud_tasks_firestore_or_secret_manager():
    assert _imported_after("import functions.main") == []


def test_a_gateway_on_redis_and_in_process_drains_loads_no_google_client(redis_url, redis_prefix):
    code = (f"from shared.config import load_settings\nfrom shared.gateway import build_gateway\n"
            f"gw = build_gateway(load_settings({{'REDIS_URL': {redis_url!r}, 'REDIS_PREFIX': {redis_prefix!r}, "
            f"'TASK_QUEUE': 'local://', 'TOKEN_STORE': 'redis://', 'BREAKER_STORE': 'redis://', "
            f"'IDEMPOTENCY_STORE': 'redis://'}}))\nassert gw.access is not None and gw.orders is not None")
    assert _imported_after(code) == []


def test_the_root_builds_access_control_and_the_order_desk_once(redis_client, redis_prefix):
    from shared.api.access import AccessControl, authorize
    from shared.gateway import build_gateway
    from shared.orders.service import OrderDesk

    gw = build_gateway(load_settings({"REDIS_PREFIX": redis_prefix, "TASK_QUEUE": "local://",
                                      "GATEWAY_MODE": "local", "GATEWAY_DEV_API_KEY": "dev-key-for-this-test"}),
                       redis_client=redis_client)
    assert isinstance(gw.access, AccessControl) and isinstance(gw.orders, OrderDesk)
    access, orders = gw.access, gw.orders
    from flask import Request
    from werkzeug.test import EnvironBuilder

    req = Request(EnvironBuilder(path="/v1/orders", method="POST",
                                 headers={"X-API-Key": "dev-key-for-this-test"}).get_environ())
    assert authorize(gw, req, "orders:write").kind == "dev_key"
    assert gw.access is access and gw.orders is orders  # nothing built or attached on use
    assert vars(gw).keys() == {f.name for f in dataclasses.fields(gw)}


def test_nothing_outside_the_root_builds_or_attaches_gateway_parts():
    # The lazy builders that once attached `_access_control` / `_order_desk` to the gateway at run time are gone,
    # and no module but the root builds a gateway's access control or order desk.
    offenders = []
    for p in sorted((ROOT / "shared").rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        if rel.startswith(("shared/sim/", "shared/bench/")) or rel == "shared/gateway.py":
            continue
        text = p.read_text(encoding="utf-8")
        if re.search(r"\bgw\._\w+\s*=|setattr\(gw\b|OrderDesk\(|AccessControl\.from_settings\(|build_gateway\(", text):
            offenders.append(rel)
    assert offenders == []


def test_settings_built_directly_are_checked_too():
    with pytest.raises(SettingsError, match="BREAKER_STORE"):
        backends.breaker_from_settings(Settings(breaker_store="etcd://x"))


def test_every_deployed_function_starts_with_the_deployed_backends(redis_client, redis_prefix, monkeypatch):
    # Each function builds only what its identity may use: parts it may not use stand refused (they fail loudly
    # on use), and building never needs a grant the function lacks. Clients connect lazily: nothing listens here.
    from shared.deployment import functions
    from shared.gateway import build_gateway

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    for name in functions():
        settings = load_settings({
            "GATEWAY_FUNCTION": name, "GATEWAY_MODE": "local", "REDIS_PREFIX": redis_prefix, "GCP_PROJECT": "p",
            "TOKEN_STORE": "secretmanager://kis-token", "SECRET_MANAGER_ENDPOINT": "127.0.0.1:9",
            "BREAKER_STORE": "firestore://", "IDEMPOTENCY_STORE": "firestore://",
            "TASK_QUEUE": "cloudtasks://127.0.0.1:9", "TASK_TARGET_URL": "http://127.0.0.1:9",
            "TOKEN_REFRESH_URL": "http://127.0.0.1:9"})
        gw = build_gateway(settings, redis_client=redis_client)
        assert gw.function is not None and gw.function.name == name
        gw.close()


DEPLOYED = ("{'GATEWAY_MODE': 'local', 'REDIS_URL': %r, 'REDIS_PREFIX': %r, 'GCP_PROJECT': 'p', "
            "'TOKEN_STORE': 'secretmanager://kis-token', 'SECRET_MANAGER_ENDPOINT': '127.0.0.1:9', "
            "'BREAKER_STORE': 'firestore://', 'IDEMPOTENCY_STORE': 'firestore://', "
            "'TASK_QUEUE': 'cloudtasks://127.0.0.1:9', 'TASK_TARGET_URL': 'http://127.0.0.1:9', "
            "'TOKEN_REFRESH_URL': 'http://127.0.0.1:9', 'GATEWAY_FUNCTION': %r}")


@pytest.mark.parametrize(("function", "firestore"), [
    ("openapi", False),  # no Firestore grant, no token, no queue: no Google client library at all
    ("health", True),  # reads the breaker's state in Firestore; holds no token and enqueues nothing
])
def test_a_function_loads_only_the_client_libraries_its_backends_use(function, firestore, redis_url, redis_prefix,
                                                                    monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    code = ("import functions.main\nfrom shared.config import load_settings\nfrom shared.gateway import build_gateway\n"
            f"gw = build_gateway(load_settings({DEPLOYED % (redis_url, redis_prefix, function)}))\n")
    # Clients are built on first use (cold start): nothing at start-up; the first Firestore use (here, naming the
    # breaker's collection, which sends nothing) loads Firestore's library and no other.
    assert _imported_after(code + "gw.close()") == []
    used = code + ("gw.firestore.collection('breakers')\n" if firestore else "") + "gw.close()"
    found = _imported_after(used)
    assert not [m for m in found if m.startswith(("google.cloud.tasks_v2", "google.cloud.secretmanager"))]
    if firestore:
        assert "google.cloud.firestore" in found
    else:
        assert found == []


def test_the_settings_accept_exactly_the_schemes_the_registry_can_build():
    # config.py checks a backend URI when the settings are read; the registry builds it. Both read one table
    # (shared.schemes), so a scheme the settings accept always has an adapter, and the reverse.
    from shared.config import VARIABLES

    declared = {v.env: v.parse.accepts for v in VARIABLES}
    for setting in SETTINGS:
        registry = {s for spec in backends.PORTS.values() if spec.setting == setting for s in spec.adapters}
        accepted = {s.strip().removesuffix("://") for s in declared[setting].removeprefix("URI:").split(",")}
        assert accepted == registry, setting
        with pytest.raises(SettingsError, match=setting):
            load_settings({setting: "etcd://x"})


@pytest.mark.parametrize("function", ["quotes", "orders", "metrics"])
def test_a_cloud_function_that_checks_api_keys_refuses_to_start_with_an_empty_pepper(function, redis_client,
                                                                                    redis_prefix, monkeypatch):
    from shared.gateway import build_gateway

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    settings = load_settings({
        "GATEWAY_FUNCTION": function, "GATEWAY_MODE": "cloud", "REDIS_PREFIX": redis_prefix, "GCP_PROJECT": "p",
        "TOKEN_STORE": "secretmanager://kis-token", "SECRET_MANAGER_ENDPOINT": "127.0.0.1:9",
        "BREAKER_STORE": "firestore://", "IDEMPOTENCY_STORE": "firestore://",
        "TASK_QUEUE": "cloudtasks://127.0.0.1:9", "TASK_TARGET_URL": "http://127.0.0.1:9",
        "TOKEN_REFRESH_URL": "http://127.0.0.1:9", "GATEWAY_API_KEY_PEPPER": ""})
    with pytest.raises(SettingsError, match="GATEWAY_API_KEY_PEPPER"):
        build_gateway(settings, redis_client=redis_client)


def test_a_cloud_function_without_the_pepper_secret_starts_and_refuses_a_key_on_use(redis_client, redis_prefix,
                                                                                    monkeypatch):
    from shared.gateway import build_gateway

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    settings = load_settings({
        "GATEWAY_FUNCTION": "drain", "GATEWAY_MODE": "cloud", "REDIS_PREFIX": redis_prefix, "GCP_PROJECT": "p",
        "TOKEN_STORE": "secretmanager://kis-token", "SECRET_MANAGER_ENDPOINT": "127.0.0.1:9",
        "BREAKER_STORE": "firestore://", "IDEMPOTENCY_STORE": "firestore://",
        "TASK_QUEUE": "cloudtasks://127.0.0.1:9", "TASK_TARGET_URL": "http://127.0.0.1:9",
        "TOKEN_REFRESH_URL": "http://127.0.0.1:9", "GATEWAY_API_KEY_PEPPER": ""})
    gw = build_gateway(settings, redis_client=redis_client)
    try:
        with pytest.raises(SettingsError, match="GATEWAY_API_KEY_PEPPER"):
            gw.access.keys.list()
    finally:
        gw.close()
