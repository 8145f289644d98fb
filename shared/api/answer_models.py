"""The HTTP API's answer models (pydantic): what the handlers return, as /openapi.json describes it and tests
validate real answers against. Answers are not re-validated per request, so no serving function imports this
module: /openapi.json (`shared.api.openapi`) and the tests do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    """An answer body as documented (extra fields allowed where the model says so)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class ErrorDetail(Answer):
    code: str
    message: str
    field: str | None = None
    request_id: str | None = None


class Error(Answer):
    """Every error answer; reads refused for load also carry the cached data that exists."""

    model_config = ConfigDict(extra="allow")
    error: ErrorDetail


class SymbolResult(Answer):
    """status plus the data fields (fresh/stale); reason for stale/pending/error."""

    model_config = ConfigDict(extra="allow")
    status: Literal["fresh", "stale", "pending", "error"]
    age_s: float | None = None
    reason: str | None = None


def read_answer(key: str) -> type[Answer]:
    """The answer of a read route: one result per requested code under `key`."""
    fields: Any = {key: (dict[str, SymbolResult], ...), "served_at": (str, ...)}
    from pydantic import create_model

    return create_model(f"{key.capitalize()}Answer", __base__=Answer, **fields)


QuotesAnswer = read_answer("quotes")
DailyAnswer = read_answer("daily")
SymbolsAnswer = read_answer("symbols")
IndicesAnswer = read_answer("indices")


class MasterSymbol(Answer):
    model_config = ConfigDict(extra="allow")
    code: str
    name: str
    market: Literal["KOSPI", "KOSDAQ", "KONEX"]
    name_en: str | None = None
    std_code: str | None = None
    etf: bool | None = None
    etn: bool | None = None
    halted: bool | None = None
    administrative: bool | None = None


class SearchAnswer(Answer):
    query: str
    results: list[MasterSymbol]
    master: dict[str, Any]
    served_at: str


class OrderAnswer(Answer):
    model_config = ConfigDict(extra="allow")
    outcome: Literal["accepted", "rejected", "unknown"]
    order: dict[str, Any] = Field(description="the order as sent; on acceptance also order_no, org_no, time")
    idempotency_key: str | None = None
    reason: str | None = None
    kis_code: str | None = None
    message: str | None = None
    check: str | None = None
    success: bool | None = Field(None, description="older trading routes only")


class Balance(Answer):
    model_config = ConfigDict(extra="allow")
    positions: list[dict[str, Any]]
    count: Annotated[int, Field(ge=0)]
    totals: dict[str, Any]
    as_of: str | None = None


class LegacyResult(Answer):
    model_config = ConfigDict(extra="allow")
    success: bool
    stock_code: str
    data: SymbolResult


class LegacyBalance(Answer):
    success: bool
    data: Balance


class Health(Answer):
    status: Literal["ok", "degraded", "down"]
    checks: dict[str, Any]
    kis_env: str
    time: str
