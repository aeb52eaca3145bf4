"""Errors as JSON ``{code, message, hint}``: each DeltaFlow error by its class, request
validation as 422 with field paths, and anything unexpected as a generic 500 whose
details go to the service log only."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from deltaflow.config.secrets import redact
from deltaflow.errors import (
    AuthError,
    Code,
    ConfigValidationError,
    DeltaFlowError,
    Diagnostic,
    ForbiddenError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    RunConflictError,
)
from deltaflow.server.models import DiagnosticOut, ErrorOut, FieldErrorOut

log = logging.getLogger("deltaflow.service.http")

#: error class -> HTTP status, most specific first
STATUS: list[tuple[type[DeltaFlowError], int]] = [
    (AuthError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (RunConflictError, 409),
    (RateLimitedError, 429),
    (QuotaExceededError, 429),
]
#: category -> HTTP status, for the errors not listed above
BY_CATEGORY = {"config": 422, "service": 422, "connector": 502}

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}

_MEANING = {
    401: "missing, wrong, revoked or expired API key",
    403: "the key's scopes do not allow this",
    404: "no such object (or not the caller's)",
    409: "the pipeline is already queued or running",
    422: "the request or the pipeline is not valid",
    429: "too many requests, or a quota used up",
}
_RETRY_AFTER = {"description": "seconds to wait (rate limit)", "schema": {"type": "integer"}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI error answers of a route that takes a key (401, 403, 429), and
    ``statuses``: each with the error model."""
    answers: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorOut, "description": _MEANING[status]}
        for status in sorted({401, 403, 429, *statuses})
    }
    answers[429]["headers"] = {"Retry-After": _RETRY_AFTER}
    return answers


def diagnostics(found: list[Diagnostic]) -> list[DiagnosticOut]:
    return [
        DiagnosticOut(file=d.file, line=d.line, path=d.path, message=d.message, hint=d.hint)
        for d in found
    ]


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""
    app.add_exception_handler(DeltaFlowError, _deltaflow)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


def status_of(error: DeltaFlowError) -> int:
    for cls, status in STATUS:
        if isinstance(error, cls):
            return status
    return BY_CATEGORY.get(error.category, 500)


def _answer(status: int, body: ErrorOut, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


async def _deltaflow(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeltaFlowError)
    status = status_of(exc)
    body = ErrorOut(code=str(exc.code), message=redact(exc.message), hint=exc.hint)
    if isinstance(exc, ConfigValidationError):
        body.message = f"{len(exc.diagnostics)} problem(s) in the pipeline configuration"
        body.diagnostics = diagnostics(exc.diagnostics)
    if isinstance(exc, RunConflictError):
        body.run_id = exc.run_id
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimitedError) else None
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, redact(str(exc)))
    return _answer(status, body, headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [_field(e) for e in exc.errors()]
    first = fields[0] if fields else FieldErrorOut(path="", message="invalid request")
    body = ErrorOut(
        code=str(Code.REQUEST_INVALID),
        message=f"the request is not valid: {first.path}: {first.message}",
        hint="fix the fields listed; /openapi.json describes every request",
        fields=fields,
    )
    return _answer(422, body)


def _field(error: Any) -> FieldErrorOut:
    path = ".".join(str(p) for p in error.get("loc", ()))
    return FieldErrorOut(path=path, message=redact(str(error.get("msg", "invalid"))))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # a body that cannot be parsed: as invalid as a wrong field
        field = FieldErrorOut(path="body", message=str(exc.detail))
        body = ErrorOut(
            code=str(Code.REQUEST_INVALID),
            message=f"the request is not valid: body: {exc.detail}",
            hint="send the body as UTF-8 JSON; /openapi.json describes every request",
            fields=[field],
        )
        return _answer(422, body)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    body = ErrorOut(code=code, message=str(exc.detail), hint="see /openapi.json for the API")
    return _answer(exc.status_code, body, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    body = ErrorOut(
        code=str(Code.INTERNAL_ERROR),
        message="the service failed to answer this request",
        hint="retry later; the service log has the details",
    )
    return _answer(500, body)
