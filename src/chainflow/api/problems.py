"""RFC 9457 problem+json for every error, from one table of error class to HTTP status."""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from chainflow.core.errors import (
    ChainflowError,
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from chainflow.core.logging import get_logger
from chainflow.core.redaction import scrub_value

PROBLEM_JSON = "application/problem+json"
_STATUS: list[tuple[type[ChainflowError], int]] = [
    (InvalidInput, 422),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
    (TooManyRequests, 429),
    (ConfigError, 500),
]
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    400: "bad_request",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
log = get_logger(__name__)


def status_of(error: ChainflowError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def problem(
    request: Request, *, status: int, code: str, title: str, detail: str, **extra: Any
) -> JSONResponse:
    """The problem+json response. Every string in it (detail, the path in `instance`, each
    error's location and message) is scrubbed here, once, of anything shaped like a private
    key: callers put keys in the wrong places, and a refusal must not echo them."""
    body = {
        "type": f"https://chainflow.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        scrub_value(jsonable_encoder(body)),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _chainflow_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChainflowError)  # noqa: S101 - registered for this class only
    status = status_of(exc)
    response = problem(
        request, status=status, code=exc.code, title=exc.title, detail=exc.detail, **exc.extra
    )
    response.headers.update(getattr(exc, "headers", None) or {})  # Retry-After, RateLimit-*
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return problem(
        request,
        status=422,
        code="validation_error",
        title="Invalid request",
        detail=f"{where}: {first['msg']}",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return problem(
        request,
        status=exc.status_code,
        code=code,
        title=code.replace("_", " ").capitalize(),
        detail=str(exc.detail),
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Overload (no pooled connection within the pool timeout), a database that is down,
    # restarting or refusing connections, or a connection lost mid-statement or mid-commit:
    # in that last case the server may have committed what the client never heard of, so
    # writes are retried with the same Idempotency-Key (a client without one that was told
    # "nothing was stored" sent the same transfer twice).
    busy = isinstance(exc, sa_exc.TimeoutError)
    log.warning("api.database_unavailable", error_type=type(exc).__name__, busy=busy)
    response = problem(
        request,
        status=503,
        code="database_busy" if busy else "database_unavailable",
        title="Database busy" if busy else "Database unavailable",
        detail="the request may have been stored: retry it shortly with the same Idempotency-Key",
    )
    response.headers["Retry-After"] = "1"
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("api.unhandled_error", error_type=type(exc).__name__, path=request.url.path)
    return problem(
        request,
        status=500,
        code="internal_error",
        title="Internal error",
        detail="an unexpected error occurred; see the server log for the request id",
    )


# ConnectionError: asyncpg's refused connect is not wrapped by SQLAlchemy.
DATABASE_UNAVAILABLE = (
    sa_exc.TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    ConnectionError,
)
# SQLSTATEs of a server that refuses a new connection and would take it a moment later, or
# that cut the connection: connection exceptions (08…), "too many clients already" and "too
# many connections for role" (53300; the rest of class 53, out of memory or disk full
# mid-query, is a fault: 500), and a server shutting down or starting up (57P01-57P03).
# asyncpg's adapter in SQLAlchemy raises these as a bare DBAPIError, not OperationalError.
_REFUSED_SQLSTATE_CLASSES = ("08",)
_REFUSED_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is down, restarting, full, slow to lend a connection
    or cut the connection: a request may be sent again (a write with the same
    Idempotency-Key: a connection lost during its commit may have stored it)."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:  # the dialect read it as a lost connection
        return True
    # The adapter's error carries the SQLSTATE, or the driver's error it wraps does.
    orig = exc.orig
    causes = (orig, orig.__cause__) if orig is not None else ()
    states = (getattr(error, "sqlstate", None) for error in causes)
    return any(
        isinstance(state, str)
        and (state[:2] in _REFUSED_SQLSTATE_CLASSES or state in _REFUSED_SQLSTATES)
        for state in states
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A DBAPIError of no more precise class: a refused connection is retryable (503), any
    other is a fault (500)."""
    if database_unavailable(exc):
        return await _database_unavailable(request, exc)
    return await _unexpected(request, exc)


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
_HANDLERS: list[tuple[type[Exception] | tuple[type[Exception], ...], Handler]] = [
    (ChainflowError, _chainflow_error),
    (RequestValidationError, _validation_error),
    (HTTPException, _http_error),
    (DATABASE_UNAVAILABLE, _database_unavailable),
    (sa_exc.DBAPIError, _database_error),
    (Exception, _unexpected),
]


def install(app: FastAPI) -> None:
    """Register the handlers that render every error as problem+json."""
    for classes, handler in _HANDLERS:
        for cls in classes if isinstance(classes, tuple) else (classes,):
            app.add_exception_handler(cls, handler)


async def render_error(request: Request, exc: Exception) -> JSONResponse:
    """The problem `install`'s handlers give for `exc`, for code that runs before the app
    (the edge middleware, whose errors no exception handler sees)."""
    for classes, handler in _HANDLERS:
        if isinstance(exc, classes):
            return await handler(request, exc)
    return await _unexpected(request, exc)  # not reached: Exception matches every error
