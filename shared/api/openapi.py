"""The OpenAPI 3.1 description of the HTTP API, generated from the route table (`shared.api.routes.ROUTES`).

Nothing here is declared by hand per route: paths, methods, scopes (x-required-scope) and security come from
each `Route`; parameters and bodies from its query and body models, answers from its answer models
(`shared.api.models`, `shared.api.answer_models`: named in the table, imported here; JSON Schema by msgspec for
the request models, by pydantic for the answer models), so the description and the validation cannot drift
apart.
Precise enough for property-based testing: every parameter has its pattern or range, every body its closed
schema, every answer (2xx and errors) its schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
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


def _models(routes: Iterable[Route]) -> list[type[Any]]:
    seen: dict[type[Any], None] = {Error: None}
    for r in routes:
        for ref in (r.body, r.ok.model, *(d.model for d in r.answers.values())):
            if ref is not None:
                seen[model(ref)] = None
    return list(seen)


def _content(doc: Doc, refs: dict[type[Any], Schema]) -> Schema:
    if doc.media != JSON:
        return {"description": doc.description, "content": {doc.media: {"schema": {"type": "string"}}}}
    schema = refs[model(doc.model)] if doc.model is not None else ANY_OBJECT
    return {"description": doc.description, "content": {JSON: {"schema": schema}}}


def _parameters(r: Route) -> list[Schema]:
    params: list[Schema] = []
    if r.query is not None:
        for f in msgspec.inspect.type_info(model(r.query)).fields:  # type: ignore[attr-defined]
            # A query parameter is text: its documented schema is the one its field names (`models._doc`).
            meta = next((t for t in (f.type, *getattr(f.type, "types", ())) if getattr(t, "extra", None)), None)
            assert meta is not None, f"{r.query}.{f.name}: no documented schema"
            param: Schema = {"name": f.encode_name, "in": "query", "required": f.required,
                             "schema": meta.extra["schema"]}
            description = (meta.extra_json_schema or {}).get("description")
            if description:
                param["description"] = description
            params.append(param)
    for h in r.headers:
        params.append({"name": h.name, "in": "header", "required": h.required, "schema": h.schema,
                       "description": h.description})
    return params


def _operation(r: Route, refs: dict[type[Any], Schema]) -> Schema:
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
    structs = [m for m in models if issubclass(m, msgspec.Struct)]
    answers = [m for m in models if issubclass(m, BaseModel)]
    assert len(structs) + len(answers) == len(models), "a model is neither a msgspec Struct nor a pydantic model"
    struct_refs, schemas = msgspec.json.schema_components(structs, ref_template=REF.format(model="{name}"))
    refs_by_key, defs = models_json_schema([(m, "validation") for m in answers], ref_template=REF)
    refs: dict[type[Any], Schema] = {m: refs_by_key[(m, "validation")] for m in answers}
    refs.update(zip(structs, struct_refs, strict=True))
    schemas = {**defs.get("$defs", {}), **schemas}
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
            "schemas": schemas,
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
