"""Liveness and readiness."""

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from chainflow.api.deps import ResourcesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "the database or Redis is unreachable"}},
)
async def readyz(resources: ResourcesDep) -> JSONResponse:
    """Ready when the database and (if configured) Redis answer within 2 s."""
    checks: dict[str, Any] = {"database": await _check_database(resources)}
    if resources.redis is not None:
        checks["redis"] = await _check_redis(resources)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _check_database(resources: ResourcesDep) -> str:
    try:
        async with asyncio.timeout(2), resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the type is reported
        return f"error: {type(exc).__name__}"
    return "ok"


async def _check_redis(resources: ResourcesDep) -> str:
    assert resources.redis is not None  # noqa: S101 - only called when configured
    try:
        async with asyncio.timeout(2):
            await resources.redis.ping()
    except Exception as exc:  # any failure means not ready; the type is reported
        return f"error: {type(exc).__name__}"
    return "ok"
