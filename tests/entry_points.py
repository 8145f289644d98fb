"""Drive an entry point of functions/main.py the way functions-framework serves it, with no server: a Flask test
client for the synchronous functions, Starlette's TestClient for the ASGI ones (`@aio.http`), answering alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from functions_framework import create_app
from starlette.testclient import TestClient

MAIN = str(Path(__file__).resolve().parents[1] / "functions" / "main.py")


class Answer:
    """An httpx response read like a Flask test response (status_code, headers, get_json, get_data)."""

    def __init__(self, r: Any) -> None:
        self._r, self.status_code, self.headers = r, r.status_code, r.headers

    def get_json(self) -> Any:
        return self._r.json()

    def get_data(self, as_text: bool = False) -> Any:
        return self._r.text if as_text else self._r.content


class AsgiClient:
    def __init__(self, app: Any) -> None:
        self._c = TestClient(app, raise_server_exceptions=False)

    def get(self, path: str, **kw: Any) -> Answer:
        return Answer(self._c.get(path, **kw))

    def post(self, path: str, **kw: Any) -> Answer:
        return Answer(self._c.post(path, **kw))


def entry_client(target: str, main: str = MAIN) -> Any:
    app = create_app(target, main)
    return app.test_client() if isinstance(app, Flask) else AsgiClient(app)
