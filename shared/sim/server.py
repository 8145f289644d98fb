"""The simulator on a loopback socket: stdlib ThreadingHTTPServer, one daemon thread per connection,
HTTP/1.1 keep-alive, and the /__admin endpoints.

Admin (never rate-limited, never faulted):
  GET  /__admin/stats          counters (see limits.SimStats) + limit, env, profile, faults
  GET  /__admin/symbols        [{"code", "name", "market"}] of every listed stock
  GET  /__admin/faults         current faults
  POST /__admin/faults         JSON with any of latency_ms, error_rate, timeout_rate, reject_rate, down,
                               down_mode ("500"|"close"), timeout_hold_s
  POST /__admin/expire-tokens  every issued token answers EGW00123 from now on
  POST /__admin/reset-stats    counters only
  POST /__admin/reset          counters, tokens, windows, pinned secrets, accounts and faults
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.clock import SYSTEM_CLOCK, Clock
from shared.sim.config import SimConfig
from shared.sim.envelopes import Reply
from shared.sim.service import KisSimulator

ADMIN_PREFIX = "/__admin/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kis-sim"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out in separate writes; don't wait for ACKs
    timeout = 120  # idle keep-alive connections end by themselves
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if url.path.startswith(ADMIN_PREFIX):
            reply = _admin(self.server.simulator, method, url.path, body)
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = self.server.simulator.handle(method, url.path, headers,
                                                 parse_qsl(url.query, keep_blank_values=True), body)
        if reply.hold_s > 0 and self.server.stopping.wait(reply.hold_s):
            reply.drop = True
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(reply.body, bytes):
            payload = reply.body
        else:
            payload = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_response(reply.status)
        # Standard headers in their canonical case, KIS's own (tr_id, tr_cont, gt_uid) in lower case: the
        # official sample client turns every all-lower-case header name into a namedtuple field, so a
        # lower-case "content-type" (not an identifier) breaks every call it makes.
        content_type = reply.content_type or "application/json; charset=UTF-8"
        self.send_header("Content-Type", content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent: request lines carry account numbers in the query."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], simulator: KisSimulator) -> None:
        self.simulator = simulator
        self.stopping = threading.Event()
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._work, args=(request, client_address), daemon=True,
                                  name="kis-sim-conn")
        with self._connections_lock:
            self._connections[thread] = request
        thread.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a client going away mid-request is not our failure
            pass
        finally:
            self.shutdown_request(request)
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def close_connections(self, timeout_s: float) -> None:
        self.stopping.set()
        with self._connections_lock:
            open_now = list(self._connections.items())
        for _, sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread, _ in open_now:
            thread.join(timeout_s)


class Listening:
    """Where a simulator listens (its port is known once started)."""

    host: str
    _port: int

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"


class SimServer(Listening):
    """The KIS simulator on host:port (0 = a free port), serving in background threads."""

    def __init__(self, cfg: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 clock: Clock | None = None) -> None:
        self.cfg = cfg or SimConfig()
        self.host = host
        self._port = port
        self.simulator = KisSimulator(self.cfg, clock or SYSTEM_CLOCK)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimServer:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._httpd = _HTTPServer((self.host, self._port), self.simulator)  # bound and listening here
        self._port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="kis-sim")
        self._thread.start()
        return self

    def stats(self) -> dict[str, Any]:
        return self.simulator.snapshot()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self.simulator.set_faults(**faults)

    def expire_tokens(self) -> int:
        return self.simulator.expire_tokens()

    def reset_stats(self) -> None:
        self.simulator.reset_stats()

    def reset(self) -> None:
        self.simulator.reset()

    def symbols(self) -> list[dict[str, str]]:
        return self.simulator.universe.listing()

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections(timeout_s=2.0)
        if thread is not None:
            thread.join(2.0)
        self._httpd = self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _admin(sim: KisSimulator, method: str, path: str, body: bytes) -> Reply:
    name = path[len(ADMIN_PREFIX):].rstrip("/")
    try:
        if method == "GET" and name == "stats":
            return Reply(200, sim.snapshot())
        if method == "GET" and name == "symbols":
            return Reply(200, sim.universe.listing())
        if name == "faults":
            if method == "POST":
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("faults must be a JSON object")
                return Reply(200, sim.set_faults(**changes))
            return Reply(200, sim.snapshot()["faults"])
        if method == "POST" and name == "expire-tokens":
            return Reply(200, {"expired": sim.expire_tokens()})
        if method == "POST" and name == "reset-stats":
            sim.reset_stats()
            return Reply(200, {"reset": "stats"})
        if method == "POST" and name == "reset":
            sim.reset()
            return Reply(200, {"reset": "all"})
    except (ValueError, TypeError) as exc:
        return Reply(400, {"error": str(exc)})
    return Reply(404, {"error": f"no admin endpoint {method} {path}"})
