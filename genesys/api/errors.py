"""Errors in OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``, never a 500 page."""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genesys.errors import (
    AuthError,
    EngineError,
    EngineUnavailable,
    GenesysError,
    InvalidRequest,
    LimitExceeded,
    NotFound,
)

log = structlog.get_logger(__name__)


def error_body(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(status: int, message: str, **kwargs: Any) -> JSONResponse:
    return JSONResponse(error_body(message, **kwargs), status_code=status)


def status_for(exc: GenesysError) -> tuple[int, str]:
    """HTTP status and OpenAI error type of a Genesys error."""
    if isinstance(exc, AuthError):
        return (403, "permission_error") if exc.forbidden else (401, "authentication_error")
    if isinstance(exc, NotFound):
        return 404, "invalid_request_error"
    if isinstance(exc, LimitExceeded) and exc.code == "body_too_large":
        return 413, "invalid_request_error"
    if isinstance(exc, InvalidRequest):
        return 400, "invalid_request_error"
    if isinstance(exc, EngineUnavailable):
        return 503, "server_error"
    if isinstance(exc, EngineError):
        return 502, "server_error"
    return 500, "server_error"


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None, str]:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = err.get("ctx", {}).get("error", "")
            return f"We could not parse the JSON body of your request: {detail}".strip(), None, "invalid_json"
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "missing":
        message = f"you must provide '{param}'"
    elif param:
        message = f"invalid '{param}': {message}"
    return message, param, "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GenesysError)
    async def _genesys(_: Request, exc: GenesysError) -> JSONResponse:
        status, type_ = status_for(exc)
        code = getattr(exc, "code", None)
        param = getattr(exc, "param", None)
        if status >= 500:
            log.error("request.failed", error=str(exc), error_type=type(exc).__name__)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        response = error_response(status, str(exc), type_=type_, param=param, code=code)
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _describe_validation(exc)
        return error_response(400, message, param=param, code=code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), type_=type_, code=code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request.crashed", error=str(exc))
        return error_response(500, "internal error; see the server log", type_="server_error")


def sse_error(exc: Exception) -> str:
    """An error event for a stream whose headers were already sent."""
    if isinstance(exc, GenesysError):
        _, type_ = status_for(exc)
        body = error_body(str(exc), type_=type_, code=getattr(exc, "code", None))
    else:
        body = error_body("internal error; see the server log", type_="server_error")
    return f"data: {json.dumps(body)}\n\n"
