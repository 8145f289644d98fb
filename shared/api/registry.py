"""What a route is, and the lookups the serve paths make in the one route table (`shared.api.routes.ROUTES`).

A `Route` declares, once: method, path, handler, the scope a caller needs (None = public), its query, body and
answer models, how the async serve path runs it, and what /openapi.json says about it.
`Registry` precomputes, when the table is built, everything a request looks up: the handler of a method and
path, the methods a path or handler answers, a handler's scope, the routes a deployed function serves.

Models are named, not imported: "module:attr" (`shared.api.models:SymbolsRead`), resolved by `model()` when
first needed (a handler validating its input, /openapi.json). A function whose routes validate nothing (health,
stats, metrics, the dashboard) never loads the models at start-up; the table stays the one source of the
document and of the scope check.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from shared.api.errors import ApiError, not_found

if TYPE_CHECKING:
    from flask import Request

    from shared.api.parts import Gateway

ModelRef = str  # "module:attr" of a model (msgspec Struct or pydantic model), imported on first use (`model`)

Reply = tuple[Any, int]
Handler = Callable[["Gateway", "Request"], Reply]
FAIL_CLOSED_SCOPE = "admin"  # a handler missing from the table needs the strongest scope


@dataclass(frozen=True)
class Header:
    """A request header the route reads (documented as a header parameter)."""

    name: str
    required: bool
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Doc:
    """One documented answer: its model (None = any JSON object) and what it means."""

    description: str
    model: ModelRef | None = None
    media: str = "application/json"  # or text/html, text/plain


@dataclass(frozen=True)
class Route:
    method: Literal["GET", "POST"]
    path: str
    handler: Handler
    scope: str | None  # what the caller's credential must hold; None = public
    summary: str
    query: ModelRef | None = None
    body: ModelRef | None = None
    body_required: bool = True
    headers: tuple[Header, ...] = ()
    ok: Doc = Doc("success")
    ok_status: int = 200
    answers: dict[int, Doc] = field(default_factory=dict)  # other documented answers (202, 409, 422, 503...)
    errors: tuple[int, ...] = ()  # error statuses it may answer, beside those every route may
    # How the async (ASGI) serve path runs it: "read" = the async reader answers it (read_kind, or a legacy
    # read); "thread" = short blocking work in a worker thread; "sync" = handed to the synchronous serve path.
    asgi: Literal["read", "thread", "sync"] = "sync"
    read_kind: str | None = None


@cache
def model(ref: ModelRef) -> type[Any]:
    """The model `ref` ("module:attr") names, imported on first use."""
    module, _, attr = ref.partition(":")
    found = getattr(importlib.import_module(module), attr)
    if not isinstance(found, type):
        raise TypeError(f"{ref} is not a model class")
    return found


def _check_ref(ref: ModelRef | None, where: str) -> None:
    if ref is not None and (ref.count(":") != 1 or not all(ref.partition(":")[::2])):
        raise ValueError(f"{where}: model {ref!r} is not named as 'module:attr'")


class Registry:
    """The route table and its precomputed lookups."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self.table: dict[tuple[str, str], Handler] = {}
        self._by_handler: dict[Handler, Route] = {}
        self._methods_of_path: dict[str, list[str]] = {}
        for r in self.routes:
            if (r.method, r.path) in self.table:
                raise ValueError(f"route {r.method} {r.path} is declared twice")
            if r.handler in self._by_handler:
                raise ValueError(f"handler {r.handler.__name__} serves two routes")
            for ref in (r.query, r.body, r.ok.model, *(d.model for d in r.answers.values())):
                _check_ref(ref, f"route {r.method} {r.path}")
            self.table[(r.method, r.path)] = r.handler
            self._by_handler[r.handler] = r
            self._methods_of_path.setdefault(r.path, []).append(r.method)
        # Handler sets of the async serve path.
        self.read_kinds: dict[Handler, str] = {r.handler: r.read_kind for r in self.routes if r.read_kind}
        self.reads = frozenset(r.handler for r in self.routes if r.asgi == "read")
        self.asgi = frozenset(r.handler for r in self.routes if r.asgi != "sync")

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def of(self, handler: Handler) -> Route | None:
        return self._by_handler.get(handler)

    def scope_of(self, handler: Handler) -> str | None:
        """The scope `handler` needs; a handler missing from the table needs admin (fail closed)."""
        r = self._by_handler.get(handler)
        return r.scope if r is not None else FAIL_CLOSED_SCOPE

    def check_method(self, request: Request, handler: Handler) -> None:
        """A function serving one handler answers only its route's method (405 naming it otherwise)."""
        r = self._by_handler.get(handler)
        if r is not None and request.method != r.method:
            raise ApiError(405, f"{request.method} not allowed; use {r.method}", code="method_not_allowed",
                           headers={"Allow": r.method})

    def find(self, request: Request, function: str = "") -> Handler:
        """The handler of the request's method and path (among the paths `function` serves, when given);
        404 for an unknown path, 405 naming the allowed methods for a known path."""
        table = self.for_function(function) if function else self.table
        path = request.path.rstrip("/") or "/"
        handler = table.get((request.method, path))
        if handler is not None:
            return handler
        allowed = sorted(m for m in self._methods_of_path.get(path, ()) if (m, path) in table)
        if allowed:
            raise ApiError(405, f"{request.method} not allowed on {path}; use {', '.join(allowed)}",
                           code="method_not_allowed", headers={"Allow": ", ".join(allowed)})
        raise not_found(f"no route {request.method} {path[:100]}")

    def for_function(self, function: str) -> dict[tuple[str, str], Handler]:
        """The routes a deployed function serves (its paths in the deployment description)."""
        return _function_table(self, function)


@cache
def _function_table(registry: Registry, function: str) -> dict[tuple[str, str], Handler]:
    from shared.deployment import functions

    fn = functions()[function]
    return {(r.method, r.path): r.handler for r in registry.routes if fn.serves(r.path)}
