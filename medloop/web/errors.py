"""One error body for every failure, and the map from MedloopError to HTTP status.

    {"error": {"code": "not_found", "message": "...", "hint": "...", "details": [...]}}

`details` lists field errors (`field` is a dotted path such as `budget.max_trials`; `line`
is the YAML line when the input was YAML).
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from medloop.core.errors import (
    ConflictError,
    DatasetError,
    MedloopError,
    NotFoundError,
    PermissionDenied,
    SpecError,
    StoreError,
    TrustError,
)
from medloop.web.accounts import AuthRequired


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="Dotted path of the offending field ('' for the whole input)")
    message: str
    line: int | None = Field(default=None, description="Line in the submitted YAML, when known")


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable machine-readable code, e.g. not_found, forbidden")
    message: str
    hint: str | None = None
    details: list[FieldError] = Field(default_factory=list)


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorInfo


class RateLimited(MedloopError):
    """Too many review actions in the window (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, hint=f"retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class CsrfError(PermissionDenied):
    """A cookie-authenticated change without the session's CSRF token."""


class InvalidInput(SpecError):
    """Input that failed validation, with one entry per offending field."""

    def __init__(self, message: str, details: list[FieldError]) -> None:
        super().__init__(message)
        self.details = details


class Unavailable(MedloopError):
    """A capability this installation lacks (HTTP 503)."""


class BadRequest(MedloopError):
    """A request value the code could not use (a NUL byte in a path, text that is not UTF-8)."""


class Internal(MedloopError):
    """A fault of the server, not of the request (HTTP 500); the traceback goes to the log."""


# errno of path errors that the request caused (a name too long, a NUL, a loop of links)
_REQUEST_ERRNOS = {errno.ENAMETOOLONG, errno.EINVAL, errno.ELOOP}
_MISSING_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
log = logging.getLogger("medloop.web")


def from_unexpected(exc: Exception) -> MedloopError:
    """An exception no route translated, as the MedloopError the client is told about. The
    message never carries the exception's text (it may name server paths)."""
    if isinstance(exc, ValueError):  # includes UnicodeError; os functions raise it for a NUL
        return BadRequest(f"the request holds a value that cannot be used ({type(exc).__name__})")
    if isinstance(exc, OSError) and exc.errno in _REQUEST_ERRNOS:
        return BadRequest("the request names a path that cannot be used")
    if isinstance(exc, OSError) and exc.errno in _MISSING_ERRNOS:
        return NotFoundError("not found")
    if isinstance(exc, RecursionError):
        return BadRequest("the request is nested too deeply")
    log.error("unhandled error", exc_info=exc)
    return Internal("internal error; the server log has the details")


# Most specific first.
_STATUS: list[tuple[type[MedloopError], int, str]] = [
    (AuthRequired, 401, "unauthenticated"),
    (RateLimited, 429, "rate_limited"),
    (CsrfError, 403, "csrf"),
    (TrustError, 409, "lifecycle"),
    (PermissionDenied, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (InvalidInput, 422, "invalid_input"),
    (SpecError, 422, "invalid_spec"),
    (DatasetError, 422, "invalid_dataset"),
    (StoreError, 503, "store_unavailable"),
    (Unavailable, 503, "unavailable"),
    (BadRequest, 400, "bad_request"),
    (Internal, 500, "internal_error"),
]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Malformed request (e.g. a body that is not JSON)"),
        (401, "No valid token or session"),
        (403, "The caller's role or ownership does not allow this"),
        (404, "Not found"),
        (409, "Conflicts with the current state or a lifecycle rule"),
        (422, "Invalid input; details name each field"),
        (413, "Request body over 1 MB"),
        (429, "Too many review actions; see Retry-After"),
        (500, "A fault of the server (logged)"),
        (503, "A backend is unavailable"),
    )
}


def status_of(exc: MedloopError) -> tuple[int, str]:
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return 400, "bad_request"


def body(
    code: str, message: str, hint: str | None = None, details: list[FieldError] | None = None
) -> dict[str, Any]:
    return ErrorBody(
        error=ErrorInfo(code=code, message=message, hint=hint, details=details or [])
    ).model_dump()


def medloop_response(exc: MedloopError) -> JSONResponse:
    status, code = status_of(exc)
    details = exc.details if isinstance(exc, InvalidInput) else None
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, AuthRequired):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body(code, exc.message, exc.hint, details), status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "cookie")]
        out.append(FieldError(field=".".join(loc), message=str(err.get("msg", "invalid"))))
    return out


def install(app: FastAPI) -> None:
    """Route every error (ours, FastAPI's validation, Starlette's 404/405) to one body."""

    async def on_medloop(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MedloopError)
        return medloop_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        first = (
            f"{details[0].field}: {details[0].message}" if details and details[0].field else "invalid request"
        )
        return JSONResponse(body("invalid_input", first, details=details), status_code=422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    app.add_exception_handler(MedloopError, on_medloop)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return medloop_response(from_unexpected(exc))

    for kind in (ValueError, OSError, RecursionError, Exception):
        app.add_exception_handler(kind, on_unexpected)
