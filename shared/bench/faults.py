"""`kisgw bench --faults`: a fault matrix against the running local stack while clients keep asking.

Each row starts readers (a read key asking for real symbols) and an order client (a trading key, one new
Idempotency-Key per order, each repeated until it gets a definitive answer), lets them run quietly, injects
one fault, heals it, and measures:

- answered with data: share of symbol answers that carried data (fresh or stale) during the row;
- violations: grants above the KIS limit seen by the simulator, plus EGW00201 refusals (a refusal means the
  gateway sent more than KIS allows);
- symbols lost: symbols asked during the row that, after healing, are neither answered nor reported failed;
- orders sent twice: orders the simulator took beyond one per Idempotency-Key;
- recovery: seconds from healing until a fresh answer for a symbol asked with refresh=true.

Faults that need a part the local stack does not run (the Firestore emulator, where the Google Cloud SDK is
missing) are reported as not run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from shared.config import load_settings

ROWS = ("drain_killed", "redis_restarted", "kis_slow_5s", "kis_5xx_burst", "token_revoked", "secret_manager_down",
        "firestore_down", "cloud_tasks_down", "instance_without_token", "pending_flood")
QUICK_ROWS = ("kis_5xx_burst", "token_revoked", "cloud_tasks_down", "pending_flood")
DATA = ("fresh", "stale")


@dataclass
class Row:
    fault: str
    ran: bool = True
    note: str = ""
    requests: int = 0
    answered_with_data_pct: float | None = None
    violations: int = 0
    symbols_lost: int = 0
    orders_sent_twice: int = 0
    orders_placed: int = 0
    recovery_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class PrivateRedis:
    """A redis-server of our own on a free port, so a fault can restart it without touching a shared one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="kisgw-faults-redis-")

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> None:
        import redis

        self._proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self._dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.3).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class Clients:
    """Readers and one order client hammering the stack until stopped; they record every answer."""

    def __init__(self, base_url: str, read_key: str, trade_key: str, symbols: list[str], *, readers: int = 6) -> None:
        self.base_url = base_url
        self.read_key = read_key
        self.trade_key = trade_key
        self.symbols = symbols
        self.readers = readers
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.statuses: dict[str, int] = {}
        self.requests = 0
        self.asked: set[str] = set()
        self.order_keys: set[str] = set()
        self.latencies: list[tuple[float, float]] = []  # (time, seconds) of answers with every symbol fresh
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.readers):
            self._threads.append(threading.Thread(target=self._read, args=(i,), daemon=True))
        self._threads.append(threading.Thread(target=self._order, daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(15)

    def data_pct(self) -> float | None:
        with self.lock:
            total = sum(self.statuses.values())
            good = sum(v for k, v in self.statuses.items() if k in DATA)
        return None if total == 0 else round(100.0 * good / total, 1)

    def _read(self, worker: int) -> None:
        rng = random.Random(worker)
        session = requests.Session()
        while not self.stop_event.is_set():
            picked = rng.sample(self.symbols, 3)
            started = time.monotonic()
            try:
                r = session.get(f"{self.base_url}/v1/quotes", params={"symbols": ",".join(picked),
                                                                      "deadline_ms": "2000"},
                                headers={"X-API-Key": self.read_key}, timeout=10)
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            except (requests.RequestException, ValueError):
                body = {}
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            per = body.get("quotes") if isinstance(body, dict) else None
            with self.lock:
                self.requests += 1
                self.asked.update(picked)
                if not isinstance(per, dict):
                    self.statuses["no answer"] = self.statuses.get("no answer", 0) + len(picked)
                    continue
                for entry in per.values():
                    st = entry.get("status", "error") if isinstance(entry, dict) else "error"
                    self.statuses[st] = self.statuses.get(st, 0) + 1
                if all(isinstance(e, dict) and e.get("status") == "fresh" for e in per.values()):
                    self.latencies.append((time.monotonic(), elapsed))

    def _order(self) -> None:
        session = requests.Session()
        n = 0
        while not self.stop_event.is_set():
            n += 1
            key = f"fault-{uuid.uuid4().hex[:12]}"
            body = {"side": "buy", "symbol": "005930", "quantity": 1, "order_type": "limit", "price": 70000}
            give_up = time.monotonic() + 20
            while time.monotonic() < give_up:
                try:
                    r = session.post(f"{self.base_url}/v1/orders", json=body, timeout=15,
                                     headers={"X-API-Key": self.trade_key, "Idempotency-Key": key})
                    with self.lock:
                        self.order_keys.add(key)
                    if r.status_code in (200, 202, 422):
                        break
                except requests.RequestException:
                    with self.lock:
                        self.order_keys.add(key)  # it may have reached the gateway
                time.sleep(0.3)
            if self.stop_event.wait(0.7):
                return


def _sim_counts(sim: Any) -> tuple[int, int, int]:
    st = sim.stats()
    return int(st.get("violations", 0)), int(st.get("refused", {}).get("EGW00201", 0)), int(st.get("orders", 0))


def _recovery(base_url: str, key: str, symbol: str, limit_s: float = 90.0) -> float | None:
    """Seconds until a refresh=true request answers `symbol` fresh."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        try:
            r = requests.get(f"{base_url}/v1/quotes", params={"symbols": symbol, "refresh": "true",
                                                              "deadline_ms": "2000"},
                             headers={"X-API-Key": key}, timeout=10)
            if r.status_code == 200 and r.json()["quotes"][symbol]["status"] == "fresh":
                return round(time.monotonic() - started, 2)
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.1)
    return None


def _lost(base_url: str, key: str, asked: set[str]) -> int:
    """Symbols that, asked once more with a long deadline, are neither answered nor reported failed."""
    lost = 0
    codes = sorted(asked)
    for i in range(0, len(codes), 50):
        part = codes[i:i + 50]
        try:
            r = requests.get(f"{base_url}/v1/quotes", params={"symbols": ",".join(part), "deadline_ms": "5000"},
                             headers={"X-API-Key": key}, timeout=20)
            per = r.json().get("quotes", {})
        except (requests.RequestException, ValueError):
            per = {}
        lost += sum(1 for s in part if (per.get(s) or {}).get("status") not in ("fresh", "stale", "error"))
    return lost


class FaultMatrix:
    def __init__(self, *, quick: bool = False, port: int = 0, log: Callable[[str], None] | None = None) -> None:
        self.quick = quick
        self.port = port
        self.log = log or (lambda m: print(f"[faults] {m}", file=sys.stderr, flush=True))
        self.fault_s = 2.0 if quick else 5.0
        self.quiet_s = 1.5 if quick else 3.0

    def run(self, rows: tuple[str, ...] | list[str] = ROWS) -> list[Row]:
        from shared.backends import api_keys_from_settings
        from shared.localstack import LocalStack, free_port

        redis_srv = PrivateRedis(free_port()) if PrivateRedis.available() else None
        if redis_srv is not None:
            redis_srv.start()
        prefix = f"faults:{uuid.uuid4().hex[:8]}"
        env = {"REDIS_PREFIX": prefix, "MARKET_HOURS_AWARE": "false", "BREAKER_RESET_TIMEOUT_S": "3",
               "BREAKER_FAIL_MAX": "5", "KIS_APP_KEY": "", "KIS_APP_SECRET": "", "KIS_ENV": "real",
               "INBOUND_RATE_PER_KEY": "1000", "CONCURRENT_PER_KEY": "200", "KIS_HTTP_TIMEOUT_S": "3",
               "GATEWAY_PENDING_NEW_PER_CALLER_S": "100", "GATEWAY_PENDING_MAX": "1000"}
        if redis_srv is not None:
            env["REDIS_URL"] = redis_srv.url
        stack = LocalStack(port=self.port or free_port(), env=env, threads=128, quiet=True)
        out: list[Row] = []
        saved_emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
        try:
            stack.start()
            self.stack = stack
            self.settings = load_settings(stack.env_used)
            # API keys made as an operator would: with the pepper the functions hold.
            orders_env = stack.functions["orders"].env
            if orders_env.get("FIRESTORE_EMULATOR_HOST"):  # the key store is the Firestore emulator
                os.environ["FIRESTORE_EMULATOR_HOST"] = orders_env["FIRESTORE_EMULATOR_HOST"]
            keys = api_keys_from_settings(load_settings({**orders_env, "GATEWAY_FUNCTION": ""}))
            self.firestore = bool(orders_env.get("FIRESTORE_EMULATOR_HOST"))
            self.keys = keys
            made = [keys.create("market:read", name="fault reader", rate_per_s=1000, max_concurrent=200),
                    keys.create("market:read,orders:write", name="fault trader", rate_per_s=100),
                    keys.create("market:read", name="fault flood", rate_per_s=1000)]
            (self.read_key, _), (self.trade_key, _), (self.flood_key, _) = made
            self.key_records = [r for _, r in made]
            universe = [s["code"] for s in stack.sim.symbols() if len(s["code"]) == 6]
            self.symbols = universe[:60]
            self.others = universe[60:] or universe  # listed codes nobody else reads: the flood's
            _recovery(stack.base_url, self.read_key, self.symbols[0])  # token issued, stack warm
            for name in rows:
                self.log(f"row {name} ...")
                try:
                    row = getattr(self, f"_row_{name}")(redis_srv)
                except Exception as exc:  # one broken row must not hide the others
                    row = Row(name, ran=False, note=f"could not run: {type(exc).__name__}: {exc}"[:200])
                self.log(f"row {name}: {asdict(row)}")
                out.append(row)
        finally:
            stack.stop()
            if redis_srv is not None:
                redis_srv.close()
            # The stack's emulator is gone: leave the process pointed where it was before.
            if saved_emulator is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = saved_emulator
        return out

    # ---- one row: clients, quiet, fault, heal, recovery, final check ------------------------------
    def _measure(self, name: str, inject: Callable[[], Any], heal: Callable[[], Any], *,
                 clients: Clients | None = None, note: str = "") -> Row:
        sim = self.stack.sim
        base = self.stack.base_url
        # Every symbol has a last-known copy before the fault, as on a gateway that has been up for a while.
        _lost(base, self.read_key, set(self.symbols))
        v0, r0, o0 = _sim_counts(sim)
        c = clients or Clients(base, self.read_key, self.trade_key, self.symbols)
        c.start()
        time.sleep(self.quiet_s)
        inject()
        time.sleep(self.fault_s)
        heal()
        recovery = _recovery(base, self.read_key, self.symbols[1])
        time.sleep(1.0)
        c.stop()
        time.sleep(0.5)
        lost = _lost(base, self.read_key, c.asked)
        # Orders still settling (a repeat waiting for its first request) are done within the client's loop.
        v1, r1, o1 = _sim_counts(sim)
        placed = o1 - o0
        return Row(name, note=note, requests=c.requests, answered_with_data_pct=c.data_pct(),
                   violations=(v1 - v0) + (r1 - r0), symbols_lost=lost,
                   orders_sent_twice=max(0, placed - len(c.order_keys)), orders_placed=placed,
                   recovery_s=recovery, extra={"statuses": dict(c.statuses)})

    def _row_drain_killed(self, _: Any) -> Row:
        def kill() -> None:
            # The drain function's worker processes die mid-batch; gunicorn starts new ones. Their claims are
            # leased: once the leases run out, other drains take the symbols again.
            proc = self.stack.functions["drain"].proc
            assert proc is not None  # the stack is running
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False)
            for pid in (int(p) for p in out.stdout.split()):
                os.kill(pid, signal.SIGKILL)
        return self._measure("drain_killed", kill, lambda: None, note="SIGKILL of the drain function's workers")

    def _row_redis_restarted(self, redis_srv: PrivateRedis | None) -> Row:
        if redis_srv is None:
            return Row("redis_restarted", ran=False, note="no redis-server binary")
        def up() -> None:
            redis_srv.start()
            # API keys live in Firestore in the cloud; the local stack keeps them in this Redis: put them back.
            for record in self.key_records:
                self.keys.store.put(record)

        return self._measure("redis_restarted", redis_srv.stop, up,
                             note="Redis stopped for the fault time, then started empty (limiter, pending, cache, "
                                  "breaker and idempotency state lost; API key records restored as Firestore would "
                                  "keep them)")

    def _row_kis_slow_5s(self, _: Any) -> Row:
        sim = self.stack.sim
        return self._measure("kis_slow_5s", lambda: sim.set_faults(latency_ms=5000),
                             lambda: sim.set_faults(latency_ms=0))

    def _row_kis_5xx_burst(self, _: Any) -> Row:
        sim = self.stack.sim
        return self._measure("kis_5xx_burst", lambda: sim.set_faults(error_rate=1.0),
                             lambda: sim.set_faults(error_rate=0.0))

    def _row_token_revoked(self, _: Any) -> Row:
        sim = self.stack.sim
        return self._measure("token_revoked", sim.expire_tokens, lambda: None,
                             note="EGW00123 on the next call; a new token waits for KIS's one-issue-a-minute rule "
                                  "(the stack issued its token moments before)")

    def _row_secret_manager_down(self, _: Any) -> Row:
        from shared.cloud.secret_manager import local_secret_client
        from shared.cloud.secret_manager_server import LocalSecretManager
        from shared.deployment import SECRETS, secret_id
        from shared.localstack import PREFIX, PROJECT

        sm = self.stack.secret_manager
        if sm is None:
            return Row("secret_manager_down", ran=False, note="not run: no local Secret Manager in this stack")
        port = int(sm.address.rsplit(":", 1)[1])
        sim = self.stack.sim

        def down() -> None:
            sm.stop(0)
            sim.expire_tokens()  # the token must be replaced while the store is away

        def up() -> None:
            # Back, but empty (the stand-in keeps secrets in memory): the secrets are created again as Terraform
            # would, and the refresh function's next run writes a new token version.
            again = LocalSecretManager(port=port, roles=sm._roles)
            addr = again.start()
            self.stack._stops.append(again.stop)
            admin = local_secret_client(addr, self.stack.credential(self.stack.deployer))
            for key in SECRETS:
                admin.create_secret(request={"parent": f"projects/{PROJECT}", "secret_id": secret_id(key, PREFIX),
                                             "secret": {"replication": {"automatic": {}}}})

        return self._measure("secret_manager_down", down, up,
                             note="Secret Manager away and the KIS token revoked meanwhile; back empty. A new token "
                                  "also waits for KIS's one-issue-a-minute rule")

    def _row_firestore_down(self, _: Any) -> Row:
        emulator = getattr(self.stack, "firestore_emulator", None)
        if not getattr(self, "firestore", False) or emulator is None:
            return Row("firestore_down", ran=False,
                       note="not run: the local stack uses Redis-backed breaker and idempotency stores unless the "
                            "Google Cloud SDK's Firestore emulator is installed")
        return self._measure("firestore_down", emulator.pause, emulator.resume,
                             note="the Firestore emulator frozen (SIGSTOP) for the fault time, then continued: "
                                  "breaker, idempotency and API key stores unreachable, their data kept")

    def _row_cloud_tasks_down(self, _: Any) -> Row:
        import grpc

        ts = self.stack.tasks_server
        port = int(ts.address.rsplit(":", 1)[1])

        def down() -> None:
            ts._server.stop(0).wait(5)

        def up() -> None:
            from concurrent.futures import ThreadPoolExecutor

            server = grpc.server(ThreadPoolExecutor(max_workers=8))
            server.add_generic_rpc_handlers((ts._handlers(),))
            server.add_insecure_port(f"127.0.0.1:{port}")
            server.start()
            ts._server = server

        return self._measure("cloud_tasks_down", down, up, note="the local Cloud Tasks server away for the fault time")

    def _row_instance_without_token(self, _: Any) -> Row:
        from shared.gateway import build_gateway

        env = {**self.stack.env_used, "TOKEN_STORE": "memory://", "TASK_QUEUE": "inline://",
               "TOKEN_REFRESH_URL": "", "GATEWAY_FUNCTION": ""}
        other = build_gateway(load_settings(env))
        stop = threading.Event()
        answers: dict[str, int] = {}

        def lonely() -> None:
            rng = random.Random(3)
            while not stop.is_set():
                try:
                    res = other.reader.get("quote", rng.sample(self.symbols, 3), deadline_s=1.0)
                    for r in res.values():
                        answers[r.status] = answers.get(r.status, 0) + 1
                except Exception as exc:
                    answers[type(exc).__name__] = answers.get(type(exc).__name__, 0) + 1
                time.sleep(0.02)

        threads = [threading.Thread(target=lonely, daemon=True) for _ in range(4)]

        def inject() -> None:
            for t in threads:
                t.start()

        def heal() -> None:
            stop.set()
            for t in threads:
                t.join(10)

        try:
            row = self._measure("instance_without_token", inject, heal,
                                note="a second instance (same app key, Redis and breaker) cannot get a token")
        finally:
            other.close()
        row.extra["breaker_after"] = other.breaker.state
        row.extra["tokenless_instance_answers"] = answers
        return row

    def _row_pending_flood(self, _: Any) -> Row:
        base = self.stack.base_url
        c = Clients(base, self.read_key, self.trade_key, self.symbols)
        stop = threading.Event()
        flood_status: dict[int, int] = {}

        others = self.others

        def flood(worker: int) -> None:
            # Listed codes (unknown ones never become pending), 100 a request, never the same twice in a row.
            session = requests.Session()
            n = worker * 37
            while not stop.is_set():
                codes = list(dict.fromkeys(others[(n + i) % len(others)] for i in range(100)))
                n += 100
                try:
                    r = session.get(f"{base}/v1/daily-prices", params={"symbols": ",".join(codes),
                                                                       "deadline_ms": "0"},
                                    headers={"X-API-Key": self.flood_key}, timeout=10)
                    flood_status[r.status_code] = flood_status.get(r.status_code, 0) + 1
                except requests.RequestException:
                    pass

        threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(3)]
        marks: dict[str, float] = {}

        def inject() -> None:
            marks["start"] = time.monotonic()
            for t in threads:
                t.start()

        def heal() -> None:
            marks["end"] = time.monotonic()
            stop.set()
            for t in threads:
                t.join(10)

        row = self._measure("pending_flood", inject, heal, clients=c,
                            note="one key asks 100 uncached listed codes per request at deadline_ms=0 (3 threads)")
        quiet = sorted(s for t, s in c.latencies if t < marks.get("start", 0))
        during = sorted(s for t, s in c.latencies if marks.get("start", 0) <= t <= marks.get("end", 0))

        def p50(v: list[float]) -> float | None:
            return round(v[len(v) // 2] * 1000, 1) if v else None

        row.extra.update({"flood_http_statuses": flood_status, "reader_fresh_p50_ms_quiet": p50(quiet),
                          "reader_fresh_p50_ms_flood": p50(during)})
        if quiet and during:
            row.extra["flood_latency_ratio"] = round(during[len(during) // 2] / max(quiet[len(quiet) // 2], 1e-6), 2)
        return row


def table(rows: list[Row]) -> str:
    head = ("| fault | ran | answered with data | violations | symbols lost | orders sent twice | recovery s | note |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        pct = "-" if r.answered_with_data_pct is None else f"{r.answered_with_data_pct}%"
        rec = "-" if r.recovery_s is None else f"{r.recovery_s}"
        extra = ""
        if "flood_latency_ratio" in r.extra:
            extra = (f" reader fresh p50 {r.extra['reader_fresh_p50_ms_quiet']} -> "
                     f"{r.extra['reader_fresh_p50_ms_flood']} ms (x{r.extra['flood_latency_ratio']})")
        lines.append(f"| {r.fault} | {'yes' if r.ran else 'no'} | {pct if r.ran else '-'} | "
                     f"{r.violations if r.ran else '-'} | {r.symbols_lost if r.ran else '-'} | "
                     f"{r.orders_sent_twice if r.ran else '-'} | {rec if r.ran else '-'} | {r.note}{extra} |")
    return "\n".join(lines)


def run(quick: bool = False, only: list[str] | None = None, port: int = 0) -> tuple[list[Row], str]:
    names = only or list(QUICK_ROWS if quick else ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; choose from {', '.join(ROWS)}")
    rows = FaultMatrix(quick=quick, port=port).run(names)
    return rows, table(rows)
