"""The simulated KIS: one request in, one `Reply` out. No sockets here (see server.py).

Order of checks for a REST call, modelled on a gateway in front of query servers:
  down → app key/secret (403 EGW00102-5; EGW02004 wrong environment) → `authorization: Bearer` (EGW00205,
  EGW00121, EGW00123) → custtype (EGW00208) → paper host refusing real TRs (500 "모의투자 TR 이 아닙니다.")
  → reject_rate / sliding window (EGW00201) / ledger window (EGW00215)
  — everything so far is a refusal: it takes no slot and is counted under stats["refused"] —
  → the call is granted (stats["calls"][tr_id]) → injected timeout / 5xx → tr_id for the path (OPSQ0002)
  → parameters (OPSQ2001/2002) → the answer. Errors after the grant are counted under stats["errors"].
The hashkey counts in the window like any REST call (app key headers, no token); the oauth endpoints do
not, they follow the token rules in auth.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

from shared.clock import Clock
from shared.sim import envelopes as E
from shared.sim import routes as R
from shared.sim.auth import AppRegistry, TokenBook
from shared.sim.config import Faults, SimConfig
from shared.sim.envelopes import Reply
from shared.sim.limits import RateWindows, SimStats
from shared.sim.prices import PriceModel
from shared.sim.quotations import MissingField, Params, Quotations
from shared.sim.trading import Accounts
from shared.sim.universe import Universe


class KisSimulator:
    def __init__(self, cfg: SimConfig, clock: Clock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.universe = Universe(cfg.seed, cfg.symbols)
        self.model = PriceModel(cfg.seed)
        self.quotations = Quotations(self.universe, self.model)
        self.accounts = Accounts(cfg, self.universe, self.model)
        self.apps = AppRegistry(cfg.env, cfg.apps)
        self.tokens = TokenBook(clock)
        self.windows = RateWindows(cfg.rate_limit, cfg.ledger_tps)
        self.stats = SimStats(cfg.rate_limit)
        self.faults = Faults.from_config(cfg)
        self._rng = random.Random(f"faults:{cfg.seed}")
        self._lock = threading.Lock()  # the gate: apps, tokens, windows, stats, faults

    # ---- control ----------------------------------------------------------------------------
    def set_faults(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            self.faults.update(**changes)
            return self.faults.as_dict()

    def expire_tokens(self) -> int:
        with self._lock:
            return self.tokens.expire_all()

    def reset_stats(self) -> None:
        with self._lock:
            self.stats.reset()

    def reset(self) -> None:
        """Back to a fresh start: stats, tokens, windows, pinned secrets, accounts, faults."""
        with self._lock:
            self.stats.reset()
            self.tokens.reset()
            self.windows.reset()
            self.apps.reset()
            self.faults = Faults.from_config(self.cfg)
            self._rng = random.Random(f"faults:{self.cfg.seed}")
        self.accounts.reset()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out = self.stats.snapshot()
            out["limit_per_s"] = self.cfg.rate_limit
            out["ledger_tps"] = self.cfg.ledger_tps
            out["env"] = self.cfg.env
            out["profile"] = self.cfg.profile
            out["faults"] = self.faults.as_dict()
            return out

    # ---- entry ------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], query: Iterable[tuple[str, str]],
               body: bytes) -> Reply:
        with self._lock:
            faults = Faults(**self.faults.as_dict())
        if faults.down:
            with self._lock:
                self.stats.dropped += 1
            if faults.down_mode == "close":
                return Reply(drop=True)
            return E.gateway_error(E.BLANK_ERROR)
        if path in R.OAUTH_PATHS and method == "POST":
            reply = self._oauth(path, body)
        elif path == R.HASHKEY_PATH and method == "POST":
            reply = self._rest(None, headers, {}, body, faults)
        elif path in R.ROUTES and R.ROUTES[path].method == method:
            params = {k.upper(): v for k, v in query}
            reply = self._rest(R.ROUTES[path], headers, params, body, faults)
        elif path.startswith(R.MASTER_PATH) and method == "GET":
            reply = self.master_file(path[len(R.MASTER_PATH):])
        else:
            reply = E.gateway_error(E.NO_ROUTE)
        if path == R.HASHKEY_PATH or path in R.ROUTES:
            # KIS sends tr_cont on every REST answer ("D": last page; balance pages say "M" first).
            reply.headers.setdefault("tr_cont", "D")
        reply.hold_s += faults.latency_ms / 1000
        return reply

    def master_file(self, name: str) -> Reply:
        """The universe as KIS's zipped fixed-width cp949 master files (kospi/kosdaq/konex_code.mst.zip)."""
        data = self.universe.master_zip(name)
        if data is None:
            return Reply(404, {"error": f"no master file {name[:40]!r}"})
        return Reply(200, data, content_type="application/zip")

    # ---- REST -------------------------------------------------------------------------------
    def _rest(self, route: R.Route | None, headers: dict[str, str], params: dict[str, str], body: bytes,
              faults: Faults) -> Reply:
        app_key = headers.get("appkey", "").strip()
        tr_id = headers.get("tr_id", "").strip().upper() if route else "hashkey"
        with self._lock:
            now = self.clock.monotonic()  # one instant for the window check and the stats of this call
            refusal = self._refusal(route, headers, app_key, tr_id, faults, now)
            if refusal is not None:
                self.stats.refusal(app_key, refusal.msg_cd)
                return refusal
            self.stats.granted(app_key, tr_id or "(none)", now)
            fault = self._injected(faults)
        if fault is not None:
            return fault
        reply = self._dispatch(route, tr_id, headers, params, body) if route else _hashkey(body)
        rt_cd = reply.body.get("rt_cd")
        with self._lock:
            if rt_cd not in (None, "0"):
                self.stats.error(reply.msg_cd)
            elif route is not None and route.handler == "order":
                self.stats.orders += 1
        reply.headers.setdefault("tr_id", tr_id)
        reply.headers.setdefault("gt_uid", secrets.token_hex(16))
        return reply

    def _refusal(self, route: R.Route | None, headers: dict[str, str], app_key: str, tr_id: str,
                 faults: Faults, now: float) -> Reply | None:
        """Gate checks, in KIS's order; called with the lock held. None = granted (slot taken)."""
        app_error = self.apps.check(app_key, headers.get("appsecret", "").strip())
        if app_error is not None:
            return E.gateway_error(app_error)
        if route is not None:
            scheme, _, token = headers.get("authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer":
                return E.gateway_error(E.NOT_BEARER)
            state = self.tokens.check(token.strip(), app_key)
            if state == "invalid":
                return E.gateway_error(E.TOKEN_INVALID)
            if state == "expired":
                return E.token_expired(self.cfg.token_status_expired)
            custtype = headers.get("custtype", "").strip().upper()
            if custtype and custtype not in ("P", "B"):  # optional: python-kis never sends it and works
                return E.gateway_error(E.BAD_CUSTTYPE)
            if self.cfg.env == "paper" and tr_id and R.refused_on_paper(tr_id):
                if tr_id in R.NO_PAPER_SERVICE:
                    return E.business_error(E.NO_SERVICE)
                return E.gateway_error(E.NOT_PAPER_TR)
        if faults.reject_rate and self._rng.random() < faults.reject_rate:
            return E.gateway_error(E.RATE_LIMITED)
        error = self.windows.admit(app_key, now, ledger=bool(route and route.ledger))
        return E.gateway_error(error) if error else None

    def _injected(self, faults: Faults) -> Reply | None:
        """Timeouts and 5xx hit granted calls (they reached KIS); called with the lock held."""
        if faults.timeout_rate and self._rng.random() < faults.timeout_rate:
            self.stats.timeouts += 1
            return Reply(drop=True, hold_s=faults.timeout_hold_s)
        if faults.error_rate and self._rng.random() < faults.error_rate:
            error = E.BLANK_ERROR if self._rng.random() < 0.5 else E.SERVER_ERROR
            self.stats.error(error[1] or "(blank)")
            return E.gateway_error(error)
        return None

    def _dispatch(self, route: R.Route, tr_id: str, headers: dict[str, str], params: dict[str, str],
                  body: bytes) -> Reply:
        if tr_id not in R.accepted_tr_ids(route, self.cfg.env):
            return E.business_error(E.UNKNOWN_TR)
        now = self.clock.time()
        try:
            if route.handler == "order":
                try:
                    fields = json.loads(body or b"{}")
                except ValueError:
                    return E.business_error(E.BAD_JSON)
                if not isinstance(fields, dict):
                    return E.business_error(E.BAD_JSON)
                return self.accounts.order(tr_id, fields, now)
            if route.handler == "balance":
                return self.accounts.balance(params, headers.get("tr_cont", "").strip().upper(), now)
            handler: Callable[[Params, float], Reply] = getattr(self.quotations, route.handler)
            return handler(params, now)
        except MissingField as exc:
            return E.business_error(exc.error)

    # ---- oauth ------------------------------------------------------------------------------
    def _oauth(self, path: str, body: bytes) -> Reply:
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return E.oauth_error(E.BAD_OAUTH_REQUEST)
        app_key = str(fields.get("appkey", "")).strip()
        secret_field = "secretkey" if path == R.APPROVAL_PATH else "appsecret"
        with self._lock:
            app_error = self.apps.check(app_key, str(fields.get(secret_field, "")).strip())
            if app_error is not None:
                self.stats.refusal(app_key, app_error[1])
                return E.gateway_error(app_error) if app_error[0] == 500 else E.oauth_error(app_error)
            if path == R.TOKEN_PATH:
                return self._issue(app_key, str(fields.get("grant_type", "")).strip())
            if path == R.REVOKE_PATH:
                if not self.tokens.revoke(str(fields.get("token", "")).strip(), app_key):
                    self.stats.refusal(app_key, E.TOKEN_INVALID[1])
                    return E.oauth_error((403,) + E.TOKEN_INVALID[1:])
                self.stats.oauth["revokeP"] += 1
                return Reply(200, {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"})
            self.stats.oauth["Approval"] += 1
            return Reply(200, {"approval_key": secrets.token_hex(143)[:286]})

    def _issue(self, app_key: str, grant_type: str) -> Reply:
        if not grant_type:
            self.stats.refusal(app_key, E.GRANT_MISSING[1])
            return E.oauth_error(E.GRANT_MISSING)
        if grant_type != "client_credentials":
            self.stats.refusal(app_key, E.GRANT_UNSUPPORTED[1])
            return E.oauth_error(E.GRANT_UNSUPPORTED)
        token, new = self.tokens.issue(app_key)
        if token is None:
            self.stats.refusal(app_key, E.TOKEN_THROTTLED[1])
            return E.oauth_error(E.TOKEN_THROTTLED)
        self.stats.tokens_issued += 1
        self.stats.tokens_new += int(new)
        self.stats.oauth["tokenP"] += 1
        return Reply(200, {"access_token": token.value, "access_token_token_expired": token.expiry_text(),
                           "token_type": "Bearer", "expires_in": 86400})


def _hashkey(body: bytes) -> Reply:
    try:
        payload: Any = json.loads(body or b"{}")
    except ValueError:
        return E.business_error(E.BAD_JSON)
    return Reply(200, {"JsonBody": payload, "HASH": hashlib.sha256(body).hexdigest()})
