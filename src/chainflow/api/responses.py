"""OpenAPI documentation of problem+json error responses."""

from typing import Any

from pydantic import BaseModel, ConfigDict

_DESCRIPTIONS = {
    401: "missing or wrong API key",
    403: "the API key lacks the scope, or its restrictions or a spending policy refuse",
    404: "not found",
    409: "conflict with the stored state",
    422: "invalid input",
    429: "over the API key's rate limit (Retry-After, RateLimit-* headers)",
    503: "a dependency is unavailable",
}


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable and meant for programs."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://chainflow.dev/problems/wallet_exists",
                    "title": "Conflict",
                    "status": 409,
                    "detail": "wallet 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 already imported",
                    "code": "wallet_exists",
                    "instance": "/v1/wallets",
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry documenting the given error statuses as problem+json; a route
    that takes a key (401) can also be over its rate limit (429)."""
    if 401 in statuses and 429 not in statuses:
        statuses = (*statuses, 429)
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }
