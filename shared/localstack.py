"""`kisgw dev`: the whole gateway on loopback, shaped like production.

Started here: the KIS simulator (unless KIS credentials are in the environment), Redis (the running local
server, else a private `redis-server`, else an embedded fake), the local Cloud Tasks server, the Secret
Manager stand-in, the scheduler stand-in, and every function under functions-framework (gunicorn) on one
base URL. Breaker state and idempotency records use the Redis-backed stores, the local stand-ins of
Firestore. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from shared.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
# The local stack's key with every scope (GATEWAY_DEV_API_KEY overrides it; refused outside local mode).
DEV_API_KEY = "dev-local-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@dataclass
class LocalStack:
    port: int
    env: dict[str, str] = field(default_factory=dict)
    threads: int = 64
    workers: int = 1
    quiet: bool = False
    firestore: bool = False
    dev_api_key: str = ""
    _stops: list[Callable[[], None]] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)
    sim: Any = None
    tasks_server: Any = None
    scheduler: Any = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        base_env = {**os.environ, **self.env}
        env: dict[str, str] = {"GATEWAY_MODE": "local", "REDIS_PREFIX": base_env.get("REDIS_PREFIX", "kisgw-dev"),
                               "GATEWAY_DEV_API_KEY": base_env.get("GATEWAY_DEV_API_KEY", DEV_API_KEY)}
        self.dev_api_key = env["GATEWAY_DEV_API_KEY"]

        # KIS: the simulator unless credentials say otherwise.
        if base_env.get("KIS_APP_KEY") and base_env.get("KIS_APP_SECRET"):
            self.lines.append(("KIS", base_env.get("KIS_BASE_URL", "KIS's own host for KIS_ENV") + " (real KIS)"))
        else:
            from shared.sim import SimConfig, SimServer

            sim_env = base_env.get("KIS_ENV", "real")
            self.sim = SimServer(SimConfig(env=sim_env, profile=base_env.get("KIS_LIMIT_PROFILE", "kis-2026-04"),
                                           seed=int(base_env.get("SIM_SEED", "1"))), port=0)
            self.sim.start()
            self._stops.append(self.sim.stop)
            env.update(KIS_BASE_URL=self.sim.base_url, KIS_APP_KEY="PSdevlocalappkey000000000000000000000",
                       KIS_APP_SECRET="dev-local-secret", KIS_ACCOUNT_NO="50000000-01")
            self.lines.append(("KIS simulator", f"{self.sim.base_url}  (stats: {self.sim.base_url}/__admin/stats)"))

        # Redis.
        url = base_env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        if not _redis_answers(url):
            url = self._start_redis()
        env["REDIS_URL"] = url
        self.lines.append(("Redis", url))

        # Secret Manager stand-in (the KIS token lives there, as in production).
        from shared.cloud.secret_manager_server import LocalSecretManager

        sm = LocalSecretManager()
        sm_addr = sm.start()
        self._stops.append(sm.stop)
        env.update(TOKEN_STORE="secretmanager://kis-access-token", SECRET_MANAGER_ENDPOINT=sm_addr,
                   GCP_PROJECT=base_env.get("GCP_PROJECT", "local-project"))
        self.lines.append(("Secret Manager (local)", sm_addr))

        # Cloud Tasks: the local server speaking the real API, pushing drains to the functions.
        from shared.cloud.local_tasks_server import LocalCloudTasks

        self.tasks_server = LocalCloudTasks()
        tasks_addr = self.tasks_server.start()
        self._stops.append(self.tasks_server.stop)
        env.update(TASK_QUEUE=f"cloudtasks://{tasks_addr}", TASK_TARGET_URL=self.base_url)
        self.lines.append(("Cloud Tasks (local)", tasks_addr))

        # Firestore: the SDK's emulator on request (breaker state and order records there, as in production);
        # by default the Redis-backed stores stand in for it.
        if self.firestore:
            from shared.cloud import FirestoreEmulator

            missing = FirestoreEmulator.missing()
            if missing:
                raise RuntimeError(f"--firestore needs the Google Cloud SDK's emulator: {missing}")
            emulator = FirestoreEmulator(free_port())
            env.update(FIRESTORE_EMULATOR_HOST=emulator.start(), BREAKER_STORE="firestore://breakers",
                       IDEMPOTENCY_STORE="firestore://order_idempotency")
            self._stops.append(emulator.stop)
            self.lines.append(("Firestore (emulator)", env["FIRESTORE_EMULATOR_HOST"]))
        else:
            self.lines.append(("Firestore stand-in", "Redis-backed breaker and idempotency stores"))

        full_env = {**base_env, **env}
        settings = load_settings(full_env)
        self._ensure_queues(settings, tasks_addr)

        # Functions under functions-framework (gunicorn), one base URL.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "functions_framework", "--target", "local_router", "--asgi",
             "--source", str(ROOT / "functions" / "main.py"), "--host", "127.0.0.1", "--port", str(self.port)],
            env={**full_env, "THREADS": str(self.threads), "WORKERS": str(self.workers),
                 "PYTHONPATH": str(ROOT)},
            cwd=str(ROOT), start_new_session=True,
            stdout=subprocess.DEVNULL if self.quiet else None, stderr=subprocess.DEVNULL if self.quiet else None)
        self._stops.append(self._stop_functions)
        self._wait_http(self.base_url + "/health", 60)
        self.lines.append(("Functions (gunicorn)", f"{self.base_url}  /v1/quotes /v1/daily-prices /v1/symbols "
                                                   "/v1/indices /health /stats /metrics /api/market-data/*"))

        # Scheduler stand-in: the same schedule definitions Terraform deploys.
        from shared.cloud.local_scheduler import LocalScheduler
        from shared.schedules import schedules

        self.scheduler = LocalScheduler(self.base_url, schedules(settings))
        self.scheduler.start()
        self._stops.append(self.scheduler.stop)
        self.lines.append(("Scheduler (local)", ", ".join(f"{s.name} [{s.cron} {s.time_zone}]"
                                                        for s in schedules(settings))))
        self.env_used = full_env

    def _ensure_queues(self, settings: Any, addr: str) -> None:
        import grpc
        from google.cloud import tasks_v2
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        from shared.cloud.tasks import ensure_queues

        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(addr)))
        ensure_queues(client, settings)

    def _start_redis(self) -> str:
        port = free_port()
        binary = shutil.which("redis-server")
        if binary:
            workdir = tempfile.mkdtemp(prefix="kisgw-redis-")
            proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", workdir],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

            def stop_redis() -> None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
                shutil.rmtree(workdir, ignore_errors=True)

            self._stops.append(stop_redis)
        else:
            from fakeredis import TcpFakeServer

            server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
            t = threading.Thread(target=server.serve_forever, daemon=True)
            t.start()

            def stop_fake() -> None:
                server.shutdown()
                server.server_close()

            self._stops.append(stop_fake)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _redis_answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError("embedded Redis did not start")
            time.sleep(0.05)
        return url

    def _wait_http(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"functions-framework exited with code {self.proc.returncode}")
            try:
                if requests.get(url, timeout=1).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")

    def _stop_functions(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"warning: stopping a part failed: {exc}", file=sys.stderr)

    def describe(self) -> str:
        width = max(len(k) for k, _ in self.lines)
        return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in self.lines)


def run(port: int, threads: int = 64, workers: int = 1, firestore: bool = False) -> int:
    stack = LocalStack(port=port, threads=threads, workers=workers, firestore=firestore)
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("starting the KIS gateway locally...", flush=True)
    stack.start()
    print("running:\n" + stack.describe(), flush=True)
    print(f"try: curl -H 'X-API-Key: {stack.dev_api_key}' '{stack.base_url}/v1/quotes?symbols=005930,000660'\n"
          "Ctrl-C stops everything.", flush=True)
    try:
        while not stopping.wait(0.5):
            if stack.proc is not None and stack.proc.poll() is not None:
                print("functions-framework exited; stopping", file=sys.stderr)
                break
    finally:
        print("stopping...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return 0
