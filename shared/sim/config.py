"""Simulator settings (fixed for a run) and faults (changeable while it runs)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from shared.budget import LIMIT_PROFILES
from shared.config import KIS_LEDGER_TPS

ENVS = ("real", "paper")
DEFAULT_POSITIONS = {"real": 65, "paper": 25}  # more than one balance page on both (50 real / 20 paper)


@dataclass(frozen=True)
class SimConfig:
    env: str = "real"
    profile: str = "kis-2026-04"
    seed: int = 1
    latency_ms: int = 0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    reject_rate: float = 0.0
    ledger_tps: int = KIS_LEDGER_TPS  # account-ledger calls (balance, orders) per second per app key; 0 = off
    token_status_expired: int = 500  # HTTP status of EGW00123 (reported as 500 and as 200)
    apps: dict[str, tuple[str, str]] | None = None  # {app_key: (app_secret, "real"|"paper")}; None = any key
    timeout_hold_s: float = 6.0  # a "timeout" holds the connection this long, then drops it
    positions: int | None = None  # holdings per account; None = DEFAULT_POSITIONS[env]
    cash: int = 100_000_000
    symbols: int = 2500

    def __post_init__(self) -> None:
        if self.env not in ENVS:
            raise ValueError(f"env {self.env!r} must be one of {ENVS}")
        if self.profile not in LIMIT_PROFILES:
            raise ValueError(f"profile {self.profile!r} must be one of {tuple(LIMIT_PROFILES)}")
        for name in ("error_rate", "timeout_rate", "reject_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must be within 0..1")
        if self.latency_ms < 0 or self.ledger_tps < 0 or self.timeout_hold_s < 0:
            raise ValueError("latency_ms, ledger_tps and timeout_hold_s must not be negative")
        if self.apps is not None:
            for key, (secret, app_env) in self.apps.items():
                if not key or not secret or app_env not in ENVS:
                    raise ValueError("apps entries must be {key: (secret, 'real'|'paper')}")
        if not 20 <= self.symbols <= 10_000:
            raise ValueError("symbols must be within 20..10000")

    @property
    def rate_limit(self) -> int:
        """REST calls per second per app key, from the shared limit profiles."""
        return LIMIT_PROFILES[self.profile][self.env]

    @property
    def position_count(self) -> int:
        return DEFAULT_POSITIONS[self.env] if self.positions is None else self.positions

    @property
    def page_size(self) -> int:
        return 50 if self.env == "real" else 20


@dataclass
class Faults:
    """Injected trouble; same names as `SimServer.set_faults` and POST /__admin/faults."""

    latency_ms: int = 0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    reject_rate: float = 0.0
    down: bool = False
    down_mode: str = "500"  # "500": answer HTTP 500; "close": drop the connection unanswered
    timeout_hold_s: float = 6.0

    @classmethod
    def from_config(cls, cfg: SimConfig) -> Faults:
        return cls(latency_ms=cfg.latency_ms, error_rate=cfg.error_rate, timeout_rate=cfg.timeout_rate,
                   reject_rate=cfg.reject_rate, timeout_hold_s=cfg.timeout_hold_s)

    def update(self, **changes: Any) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(known)}")
        for name, value in changes.items():
            if name in ("error_rate", "timeout_rate", "reject_rate"):
                value = float(value)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name}={value} must be within 0..1")
            elif name == "latency_ms":
                value = int(value)
                if value < 0:
                    raise ValueError("latency_ms must not be negative")
            elif name == "timeout_hold_s":
                value = float(value)
                if value < 0:
                    raise ValueError("timeout_hold_s must not be negative")
            elif name == "down":
                if not isinstance(value, bool):
                    raise ValueError("down must be true or false")
            elif name == "down_mode" and value not in ("500", "close"):
                raise ValueError("down_mode must be '500' or 'close'")
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
