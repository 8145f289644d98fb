"""A `requests` adapter standing in for the network: a handler function answers each prepared request."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from shared.config import load_settings

APP_KEY = "PSappkey0123456789abcdefghijklmnopqr"
APP_SECRET = "appsecret-" + "x" * 170
ACCOUNT = "1234567801"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.secret-token-body"


@dataclass
class Seen:
    """One request as the fake server saw it."""

    method: str
    path: str
    params: dict[str, str]
    headers: CaseInsensitiveDict
    body: dict[str, Any] | None


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


Handler = Callable[[Seen], Reply]


class FakeKIS(BaseAdapter):
    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.seen: list[Seen] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url)
        body = json.loads(request.body) if request.body else None
        seen = Seen(request.method or "", url.path, dict(parse_qsl(url.query, keep_blank_values=True)),
                    CaseInsensitiveDict(request.headers), body)
        self.seen.append(seen)
        reply = self.handler(seen)  # may raise requests exceptions to simulate the network
        resp = requests.Response()
        resp.status_code = reply.status
        resp.headers = CaseInsensitiveDict({"content-type": "application/json; charset=UTF-8", **reply.headers})
        resp._content = reply.raw if reply.raw is not None else json.dumps(reply.body, ensure_ascii=False).encode()
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def ok(output: Any = None, **extra: Any) -> Reply:
    body = {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다."}
    if output is not None:
        body["output"] = output
    body.update(extra)
    return Reply(200, body)


def egw(code: str, msg: str, status: int = 500) -> Reply:
    return Reply(status, {"rt_cd": "1", "msg_cd": code, "msg1": msg})


def token_reply(value: str = TOKEN, expires: str = "2026-09-02 10:15:00", expires_in: int = 86400) -> Reply:
    return Reply(200, {"access_token": value, "access_token_token_expired": expires, "token_type": "Bearer",
                       "expires_in": expires_in})


def make_settings(**overrides: Any):
    env = {"KIS_ENV": "real", "KIS_BASE_URL": "https://kis.test:9443", "KIS_APP_KEY": APP_KEY,
           "KIS_APP_SECRET": APP_SECRET, "KIS_ACCOUNT_NO": ACCOUNT}
    return load_settings(env, **overrides)


def make_client(handler: Handler, *, paper: bool = False, token_provider: Any = lambda: TOKEN, **kw: Any):
    from shared.kis.client import KISClient

    adapter = FakeKIS(handler)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    settings = make_settings(kis_env="paper" if paper else "real", **kw.pop("settings", {}))
    client = KISClient(settings, token_provider=token_provider, session=session, **kw)
    return client, adapter
