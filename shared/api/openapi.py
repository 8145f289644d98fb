"""The OpenAPI 3.1 description of the HTTP API, generated from the route table (`shared.api.routes.ROUTES`).

Nothing here is declared by hand per route: paths, methods, scopes (x-required-scope) and security come from
each `Route`; parameters and bodies from its query and body models, answers from its answer models
(`shared.api.models`, `shared.api.answer_models`: named in the table, imported here; JSON Schema by pydantic),
so the description and the validation cannot drift apart.
Precise enough for property-based testing: every parameter has its pattern or range, every body its closed
schema, every answer (2xx and errors) its schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.api.access import ID_TOKEN_SCOPES
from shared.api.answer_models import Error
from shared.api.registry import Doc, Route, model
from shared.config import Settings

Schema = dict[str, Any]
JSON = "application/json"
REF = "#/components/schemas/{model}"
ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
# Statuses every route may answer beside its own: a bad request, no/unknown credential, missing scope, the
# inbound rate, an internal error (public routes: a wrong method and an internal error only).
COMMON_ERRORS = (400, 401, 403, 429, 500)
PUBLIC_ERRORS = (405,)
ERROR_TEXT = {
    400: "invalid input: the error names the field", 401: "no or unknown credentials",
    403: "the credential lacks the scope", 404: "no such route", 405: "method not allowed",
    409: "idempotency conflict", 413: "body too large",
    429: "too many requests, requests in flight or new symbols for this key (see Retry-After; reads include the "
         "cached data that exists)",
    500: "internal error", 502: "KIS refused or failed",
    503: "KIS or a dependency unavailable, or too much pending work (see Retry-After; reads include the cached "
         "data that exists)",
}


def _security(scope: str | None) -> list[dict[str, list[str]]]:
    # OpenAPI allows scopes only for OAuth schemes: the key scope an operation needs is in x-required-scope.
    if scope is None:
        return []
    schemes: list[dict[str, list[str]]] = [{"ApiKey": []}]
    if scope in ID_TOKEN_SCOPES:
        schemes.append({"GoogleIdToken": []})
    return schemes


def _models(routes: Iterable[Route]) -> list[type[BaseModel]]:
    seen: dict[type[BaseModel], None] = {Error: None}
    for r in routes:
        for ref in (r.body, r.ok.model, *(d.model for d in r.answers.values())):
            if ref is not None:
                seen[model(ref)] = None
    return list(seen)


def _content(doc: Doc, refs: dict[type[BaseModel], Schema]) -> Schema:
    if doc.media != JSON:
        return {"description": doc.description, "content": {doc.media: {"schema": {"type": "string"}}}}
    schema = refs[model(doc.model)] if doc.model is not None else ANY_OBJECT
    return {"description": doc.description, "content": {JSON: {"schema": schema}}}


def _parameters(r: Route) -> list[Schema]:
    params: list[Schema] = []
    if r.query is not None:
        query = model(r.query)
        schema = query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            prop = {k: v for k, v in prop.items()
                    if k not in ("title", "description") and not (k == "default" and v is None)}
            param: Schema = {"name": name, "in": "query", "required": name in required, "schema": prop}
            description = query.model_fields[name].description
            if description:
                param["description"] = description
            params.append(param)
    for h in r.headers:
        params.append({"name": h.name, "in": "header", "required": h.required, "schema": h.schema,
                       "description": h.description})
    return params


def _operation(r: Route, refs: dict[type[BaseModel], Schema]) -> Schema:
    error = {"description": "", "content": {JSON: {"schema": refs[Error]}}}
    statuses = sorted({*(COMMON_ERRORS if r.scope is not None else ()), *PUBLIC_ERRORS, *r.errors,
                       *((413,) if r.body is not None else ())})
    responses: Schema = {str(r.ok_status): _content(r.ok, refs)}
    for status, doc in r.answers.items():
        responses[str(status)] = _content(doc, refs)
    for status in statuses:
        if str(status) not in responses:
            responses[str(status)] = {**error, "description": ERROR_TEXT[status]}
    responses["default"] = {**error, "description": "any other error"}
    op: Schema = {"summary": r.summary, "security": _security(r.scope), "responses": responses}
    if r.scope is not None:
        op["x-required-scope"] = r.scope
    params = _parameters(r)
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {"required": r.body_required, "content": {JSON: {"schema": refs[model(r.body)]}}}
    return op


def build_document(routes: Iterable[Route], settings: Settings | None = None,
                   server_url: str | None = None) -> Schema:
    """The document of `routes`; the largest deadline_ms is the one `settings` allow (default settings when
    none are given)."""
    routes = tuple(routes)
    models = _models(routes)
    refs_by_key, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    refs = {m: refs_by_key[(m, "validation")] for m in models}
    paths: dict[str, Schema] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, refs)
    _cap_deadline(paths, (settings or Settings()).max_deadline_ms)
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {"title": "KIS gateway", "version": "1",
                 "description": "Market data, orders and balance in front of the KIS OpenAPI. Send X-API-Key "
                                "(scopes market:read, orders:write, admin); Google Cloud callers may send a "
                                "Google-signed ID token as Authorization: Bearer."},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "GoogleIdToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _cap_deadline(paths: dict[str, Schema], max_ms: int) -> None:
    """deadline_ms's maximum as this gateway's GATEWAY_MAX_DEADLINE_MS (the model's is the setting's bound)."""
    for item in paths.values():
        for op in item.values():
            for p in op.get("parameters", ()):
                if p["name"] == "deadline_ms":
                    p["schema"] = {**p["schema"], "maximum": max_ms}
