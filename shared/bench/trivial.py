"""The ceiling the benchmark measures the gateway against: a trivial functions-framework ASGI function, served
the same way as the gateway's read functions (functions-framework, gunicorn + uvicorn worker)."""

from functions_framework import aio
from starlette.requests import Request
from starlette.responses import JSONResponse


@aio.http
async def trivial(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})
