"""`kisgw dev`: the deployed topology on loopback (shared/deployment.py is the one description of it).

Started here: the KIS simulator (unless KIS credentials are in the environment), Redis (the running local
server, else a private `redis-server`, else an embedded fake), a local ID token issuer, the Secret Manager and
Cloud Tasks stand-ins (both check the caller's identity against the role table Terraform deploys), the
Firestore emulator where the Google Cloud SDK is installed (else Redis-backed stand-ins, said so), one
functions-framework process per deployed function with exactly its env, secrets and service account, a
front on the base URL that routes paths to the public functions as the load balancer does, and the
scheduler stand-in, which calls the internal functions with its own ID token. Ctrl-C stops everything.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets as secrets_lib
import shutil
import signal
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
from shared.deployment import (
    INVOKERS,
    SECRETS,
    Function,
    function_for_path,
    functions,
    role_table,
    secret_id,
    service_account_email,
)
from shared.loopback import quiet_port

ROOT = Path(__file__).resolve().parent.parent
# The local stack's key with every scope (GATEWAY_DEV_API_KEY overrides it; refused outside local mode).
DEV_API_KEY = "dev-local-key"


def free_port() -> int:
    """A free loopback port for a process this stack starts (see shared/loopback.py for why not port 0)."""
    return quiet_port("127.0.0.1")


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


PREFIX = "kisgw"             # the deployment's name prefix (Terraform var.name_prefix)
PROJECT = "local-project"
# The secrets Cloud Run injects as environment variables; a function gets only the ones it holds.
SECRET_ENV = frozenset(env for _, env in SECRETS.values() if env and env != "REDIS_URL")


def function_env(f: Function, base: dict[str, str], secret_values: dict[str, str], *, url: str, email: str,
                 invokers: dict[str, str], credential: str, dev_api_key: str) -> dict[str, str]:
    """A function's process environment: `base` (no secrets) plus exactly the secrets the description gives it,
    its identity (LOCAL_CREDENTIAL) and the ID token audience and accounts it accepts, as Terraform sets them."""
    env = {k: v for k, v in base.items() if k not in SECRET_ENV}
    env.update(dict(f.env))
    env.update(GATEWAY_FUNCTION=f.name, ID_TOKEN_AUDIENCE=url, LOCAL_CREDENTIAL=credential,
               ID_TOKEN_ALLOWED_EMAILS=",".join(invokers[i] for i in f.invokers))
    if f.public or "scraper" in f.invokers:
        env["GATEWAY_DEV_API_KEY"] = dev_api_key
    for key in f.secrets:
        var = SECRETS[key][1]
        if var and secret_values.get(key):
            env[var] = secret_values[key]
    if f.asgi:
        env["FUNCTION_USE_ASGI"] = "true"
    return env


@dataclass
class FunctionProcess:
    function: Function
    port: int
    email: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    # Quiet stacks: the last lines of the process's output, drained from a pipe by a thread and kept to say
    # why it stopped (a bounded deque: a long benchmark's request logs are dropped as they come).
    tail: collections.deque[str] | None = None

    def keep_tail(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.tail = collections.deque(maxlen=5)
        out, tail = self.proc.stdout, self.tail

        def drain() -> None:
            for raw in out:
                line = raw.decode(errors="replace").strip()
                if line:
                    tail.append(line)

        threading.Thread(target=drain, name=f"output-{self.function.name}", daemon=True).start()

    def last_words(self) -> str:
        """The end of a quiet process's output (why it exited), or a pointer to the console."""
        if self.tail is None:
            return "see its output above"
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1)
        time.sleep(0.1)  # the drain thread reads what the process wrote last
        return " | ".join(list(self.tail)[-3:])[-600:] or "no output"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LocalStack:
    """The deployed topology on loopback: one functions-framework process per function of the deployment
    description, each with exactly its env, secrets and identity, behind one front on `port`."""

    port: int
    env: dict[str, str] = field(default_factory=dict)
    threads: int = 64
    workers: int = 1
    quiet: bool = False
    firestore: bool | None = None  # None: the SDK's emulator where installed, else the Redis-backed stand-ins
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # deployment description changes
    dev_api_key: str = ""
    sim_process: bool = False  # the simulator in a process of its own (the benchmark), not a thread of this one
    _stops: list[Callable[[], None]] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)
    sim: Any = None
    tasks_server: Any = None
    secret_manager: Any = None
    firestore_emulator: Any = None  # the FirestoreEmulator when the stack runs one (fault injection)
    scheduler: Any = None
    issuer: Any = None
    front: Any = None
    functions: dict[str, FunctionProcess] = field(default_factory=dict)
    deployer: str = ""
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """A function process that exited (None while all run): what `run()` watches."""
        for fp in self.functions.values():
            if fp.proc is not None and fp.proc.poll() is not None:
                return fp.proc
        return None

    def url(self, function: str) -> str:
        return self.functions[function].url

    def credential(self, email: str, audience: str = "") -> str:
        """An ID token of `email` from the local issuer (tests: act as a caller)."""
        from shared.cloud.identity import LOCAL_API_AUDIENCE

        token: str = self.issuer.id_token(email, audience or LOCAL_API_AUDIENCE)
        return token

    def email(self, account_id: str) -> str:
        return service_account_email(account_id, PREFIX, PROJECT)

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from shared.cloud.identity import LOCAL_API_AUDIENCE, LocalIssuer, RoleCheck

        started = time.monotonic()
        base_env = {**os.environ, **self.env}
        fns = functions(self.overrides)
        common: dict[str, str] = {"GATEWAY_MODE": "local", "REDIS_PREFIX": base_env.get("REDIS_PREFIX", "kisgw-dev"),
                                  "GCP_PROJECT": PROJECT, "KIS_KEY_ID": PREFIX}
        self.dev_api_key = base_env.get("GATEWAY_DEV_API_KEY", DEV_API_KEY)
        secret_values: dict[str, str] = {"api_keys": secrets_lib.token_urlsafe(32)}
        self.secret_values = secret_values  # what Secret Manager would hold (tests create API keys with the pepper)

        # The Firestore emulator (Java) starts slowest: begin it first, wait for it last.
        use_firestore = self.firestore
        if use_firestore is None:
            from shared.cloud.local_firestore import FirestoreEmulator

            use_firestore = FirestoreEmulator.missing() is None
        emulator_thread = None
        emulator_box: dict[str, Any] = {}
        if use_firestore:
            from shared.cloud.local_firestore import FirestoreEmulator

            missing = FirestoreEmulator.missing()
            if missing:
                raise RuntimeError(f"--firestore needs the Google Cloud SDK's emulator: {missing}")
            emulator = FirestoreEmulator()
            self._stops.append(emulator.stop)
            self.firestore_emulator = emulator

            def start_emulator() -> None:
                try:
                    emulator_box["host"] = emulator.start()
                except BaseException as exc:
                    emulator_box["error"] = exc

            emulator_thread = threading.Thread(target=start_emulator, daemon=True)
            emulator_thread.start()

        # KIS: the simulator unless credentials say otherwise.
        if base_env.get("KIS_APP_KEY") and base_env.get("KIS_APP_SECRET"):
            self.lines.append(("KIS", base_env.get("KIS_BASE_URL", "KIS's own host for KIS_ENV") + " (real KIS)"))
            secret_values.update(kis_app_key=base_env["KIS_APP_KEY"], kis_app_secret=base_env["KIS_APP_SECRET"],
                                 kis_account_no=base_env.get("KIS_ACCOUNT_NO", ""))
            if base_env.get("KIS_BASE_URL"):
                common["KIS_BASE_URL"] = base_env["KIS_BASE_URL"]
        else:
            from shared.sim import SimConfig, SimServer
            from shared.sim.process import SimProcess

            sim_env = base_env.get("KIS_ENV", "real")
            cfg = SimConfig(env=sim_env, profile=base_env.get("KIS_LIMIT_PROFILE", "kis-2026-04"),
                            seed=int(base_env.get("SIM_SEED", "1")))
            self.sim = SimProcess(cfg) if self.sim_process else SimServer(cfg, port=0)
            self.sim.start()
            self._stops.append(self.sim.stop)
            common["KIS_BASE_URL"] = self.sim.base_url
            secret_values.update(kis_app_key="PSdevlocalappkey000000000000000000000",
                                 kis_app_secret="dev-local-secret", kis_account_no="50000000-01")
            self.lines.append(("KIS simulator", f"{self.sim.base_url}  (stats: {self.sim.base_url}/__admin/stats)"))
        if base_env.get("ALERT_WEBHOOK_URL"):
            secret_values["alert_webhook"] = base_env["ALERT_WEBHOOK_URL"]

        # Redis.
        url = base_env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        if not _redis_answers(url):
            url = self._start_redis()
        secret_values["redis_url"] = url
        self.lines.append(("Redis", url))

        # The local issuer: Google-format ID tokens for every identity, its certificates on a local URL.
        self.issuer = LocalIssuer()
        certs_url = self.issuer.start()
        self._stops.append(self.issuer.stop)
        common.update(ID_TOKEN_CERTS_URL=certs_url, ID_TOKEN_ISSUERS=self.issuer.issuer)
        self.lines.append(("ID token issuer (local)", certs_url))
        self.deployer = self.email("deployer")
        deployer_cred = self.credential(self.deployer)
        roles = RoleCheck(self.issuer.verify, role_table(fns, prefix=PREFIX, project=PROJECT), admins=[self.deployer])

        # Secret Manager stand-in: the token secret as Terraform creates it; callers checked against the roles.
        from shared.cloud.secret_manager import local_secret_client
        from shared.cloud.secret_manager_server import LocalSecretManager

        self.secret_manager = LocalSecretManager(roles=roles)
        sm_addr = self.secret_manager.start()
        self._stops.append(self.secret_manager.stop)
        admin_sm = local_secret_client(sm_addr, deployer_cred)
        for key in SECRETS:
            admin_sm.create_secret(request={"parent": f"projects/{PROJECT}", "secret_id": secret_id(key, PREFIX),
                                            "secret": {"replication": {"automatic": {}}}})
        common.update(TOKEN_STORE=f"secretmanager://{secret_id('kis_token', PREFIX)}", SECRET_MANAGER_ENDPOINT=sm_addr)
        self.lines.append(("Secret Manager (local)", f"{sm_addr}  (checks callers' roles)"))

        # Cloud Tasks: the local server speaking the real API; pushes carry signed ID tokens.
        from shared.cloud.local_tasks_server import LocalCloudTasks

        self.tasks_server = LocalCloudTasks(signer=self.issuer.id_token, roles=roles)
        tasks_addr = self.tasks_server.start()
        self._stops.append(self.tasks_server.stop)
        self.lines.append(("Cloud Tasks (local)", f"{tasks_addr}  (checks enqueuers' roles)"))

        # Ports and URLs of every function, known before any starts (as Terraform knows them).
        procs = {name: FunctionProcess(f, free_port(), self.email(f.account_id), {}) for name, f in fns.items()}
        invokers = {k: self.email(v) for k, v in INVOKERS.items()}
        common.update(TASK_QUEUE=f"cloudtasks://{tasks_addr}", TASK_TARGET_URL=procs["drain"].url,
                      TASK_OIDC_SERVICE_ACCOUNT=invokers["tasks"], TOKEN_REFRESH_URL=procs["refresh_token"].url)

        if emulator_thread is not None:
            emulator_thread.join()
            if "error" in emulator_box:
                raise emulator_box["error"]
            common.update(FIRESTORE_EMULATOR_HOST=emulator_box["host"], BREAKER_STORE="firestore://breakers",
                          IDEMPOTENCY_STORE="firestore://order_idempotency")
            self.lines.append(("Firestore (emulator)", emulator_box["host"] + "  (grants enforced where clients "
                                                                                  "are built)"))
        else:
            self.lines.append(("Firestore stand-in", "Redis-backed breaker, idempotency and API key stores "
                                                     "(no Cloud SDK: read-only grants not enforced there)"))

        # Process env: the caller's environment without any secret, plus the deployment's settings.
        plain = {k: v for k, v in base_env.items() if k not in SECRET_ENV and k not in ("GATEWAY_FUNCTION",)}
        full_env = {**plain, **common, "REDIS_URL": url}
        settings = load_settings(full_env)
        self._ensure_queues(settings, tasks_addr, deployer_cred)
        for fp in procs.values():
            fp.env = function_env(fp.function, full_env, secret_values, url=fp.url, email=fp.email,
                                  invokers=invokers, credential=self.issuer.id_token(fp.email, LOCAL_API_AUDIENCE,
                                                                                     24 * 3600),
                                  dev_api_key=self.dev_api_key)
            fp.env.update(THREADS=str(self.threads), WORKERS=str(self.workers), PYTHONPATH=str(ROOT))
        self.functions = procs
        # The operator's view (bench, tools): the common settings plus the KIS credentials the stack gave out.
        self.env_used = {**full_env, **{SECRETS[k][1]: v for k, v in secret_values.items()
                                        if k in ("kis_app_key", "kis_app_secret", "kis_account_no") and v}}
        self.lines.append(("Symbol master", _load_symbol_master(settings)))

        for fp in procs.values():  # all at once: start-up is mostly imports, spread over the cores
            fp.proc = subprocess.Popen(
                [sys.executable, "-m", "functions_framework", "--target", fp.function.name,
                 "--source", str(ROOT / "functions" / "main.py"), "--host", "127.0.0.1", "--port", str(fp.port)],
                env=fp.env, cwd=str(ROOT), start_new_session=True,
                stdout=subprocess.PIPE if self.quiet else None, stderr=subprocess.STDOUT if self.quiet else None)
            if self.quiet:
                fp.keep_tail()
        self._stops.append(self._stop_functions)
        self._wait_functions(120)

        # The front: what the load balancer does for public functions.
        from shared.front import Front

        public = {n: fp for n, fp in procs.items() if fp.function.public}

        def resolve(path: str) -> tuple[str, int] | None:
            f = function_for_path(path, {n: fp.function for n, fp in public.items()})
            return ("127.0.0.1", public[f.name].port) if f is not None else None

        self.front = Front(resolve, port=self.port)
        self.front.start()
        self._stops.append(self.front.stop)
        self.lines.append(("Front (load balancer)", f"{self.base_url}  -> public functions by path"))
        for name, fp in procs.items():
            f = fp.function
            self.lines.append((f"  {name}", f"{fp.url}  {'public  ' if f.public else 'internal'}  {fp.email}"))

        # Scheduler stand-in: the same schedule definitions Terraform deploys, with the scheduler's ID token.
        from shared.cloud.local_scheduler import LocalScheduler
        from shared.schedules import schedules

        jobs = schedules(settings)
        targets = {}
        for job in jobs:
            target = function_for_path(job.target, fns)
            if target is None:
                raise RuntimeError(f"no function serves the scheduled target {job.target}")
            targets[job.name] = procs[target.name].url
        self.scheduler = LocalScheduler(self.base_url, jobs, target_urls=targets,
                                        id_token=lambda aud: self.issuer.id_token(invokers["scheduler"], aud))
        self.scheduler.start()
        self._stops.append(self.scheduler.stop)
        # As after a deploy (terraform/DEPLOY.md): run the token job once rather than wait up to 30 minutes.
        first = self.scheduler.run_now("refresh-token")
        self.lines.append(("First token", f"refresh-token job -> HTTP {first.status or first.error}"))
        self.lines.append(("Scheduler (local)", ", ".join(f"{s.name} [{s.cron} {s.time_zone}]" for s in jobs)
                           + f"  as {invokers['scheduler']}"))
        self.startup_s = time.monotonic() - started

    def _ensure_queues(self, settings: Any, addr: str, credential: str) -> None:
        from shared.cloud.tasks import ensure_queues, tasks_client

        ensure_queues(tasks_client(settings, credential), settings)

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

    def _wait_functions(self, timeout_s: float) -> None:
        """Until every function answers HTTP (any status: the handler ran)."""
        deadline = time.monotonic() + timeout_s
        waiting = dict(self.functions)
        while waiting:
            for name, fp in list(waiting.items()):
                if fp.proc is not None and fp.proc.poll() is not None:
                    raise RuntimeError(f"function {name} exited with code {fp.proc.returncode} on port {fp.port}: "
                                       f"{fp.last_words()}")
                try:
                    requests.get(fp.url + "/__ready", timeout=2)
                    del waiting[name]
                except requests.RequestException:
                    pass
            if waiting:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"functions did not answer within {timeout_s:.0f}s: {', '.join(waiting)}")
                time.sleep(0.2)

    def _stop_functions(self) -> None:
        procs = [fp.proc for fp in self.functions.values() if fp.proc is not None and fp.proc.poll() is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

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


def _load_symbol_master(settings: Any) -> str:
    """Loaded at start (as the scheduled preload does daily) so the unknown-code check is live at once."""
    import redis

    from shared.market.symbol_master import SymbolMaster, refresh_from_settings

    client = redis.Redis.from_url(settings.redis_url.get())
    try:
        status = refresh_from_settings(SymbolMaster(client, prefix=settings.redis_prefix), settings)
    finally:
        client.close()
    if status.get("loaded"):
        return f"{status['symbols']} symbols from {settings.kis_master_url}"
    return f"not loaded ({status.get('last_refresh_error', 'unknown reason')}); every well-formed code allowed"


def run(port: int, threads: int = 64, workers: int = 1, firestore: bool | None = None) -> int:
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
                print("a function process exited; stopping", file=sys.stderr)
                break
    finally:
        print("stopping...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return 0
