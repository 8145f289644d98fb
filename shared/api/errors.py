"""Client errors as JSON: every 4xx names what was wrong."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, field: str | None = None, code: str = "bad_request",
                 headers: dict[str, str] | None = None, data: dict[str, Any] | None = None) -> None:
        self.data = data or {}  # answer data that goes with the error (e.g. cached quotes)
        self.status = status
        self.message = message
        self.field = field
        self.code = code
        self.headers = headers or {}
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {**self.data, "error": err}


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, field=field)


def not_found(message: str) -> ApiError:
    return ApiError(404, message, code="not_found")
