"""`kisgw sim`: run the KIS simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from shared.budget import LIMIT_PROFILES
from shared.sim.config import ENVS, SimConfig
from shared.sim.server import SimServer


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The sim flags; pass a subparser to mount them under `kisgw sim`."""
    p = parser or argparse.ArgumentParser(prog="kisgw sim", description="KIS OpenAPI simulator (loopback)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--env", choices=ENVS, default="real")
    p.add_argument("--profile", choices=tuple(LIMIT_PROFILES), default="kis-2026-04")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--timeout-rate", type=float, default=0.0)
    p.add_argument("--reject-rate", type=float, default=0.0)
    p.add_argument("--ledger-tps", type=int, default=SimConfig.ledger_tps,
                   help="balance/order calls per second per app key (EGW00215; 0 = off)")
    p.add_argument("--token-status-expired", type=int, default=500, help="HTTP status of EGW00123")
    return p


def config_from(args: argparse.Namespace) -> SimConfig:
    return SimConfig(env=args.env, profile=args.profile, seed=args.seed, latency_ms=args.latency_ms,
                     error_rate=args.error_rate, timeout_rate=args.timeout_rate, reject_rate=args.reject_rate,
                     ledger_tps=args.ledger_tps, token_status_expired=args.token_status_expired)


def run(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C/SIGTERM (or until `stop` is set, for tests). Prints the base URL first."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from(args)
    except ValueError as exc:
        print(f"kisgw sim: {exc}")
        return 2
    stop = stop or threading.Event()
    sim = SimServer(cfg, host=args.host, port=args.port).start()
    print(f"KIS simulator ({cfg.env}, {cfg.profile}, {cfg.rate_limit}/s per app key) at {sim.base_url}",
          flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
