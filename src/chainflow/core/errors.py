"""The ChainflowError tree: every error a user can see, with a stable code and safe detail.

ChainflowError
├── InvalidInput      (422)  bad values a caller sent
├── Unauthorized      (401)  missing or wrong API key
├── Forbidden         (403)  key lacks the scope
├── NotFound          (404)
├── Conflict          (409)  duplicate, or a state that forbids the action
├── TooManyRequests   (429)  over a rate limit
├── Unavailable       (503)  a dependency (DB, Redis, RPC) cannot be reached
└── ConfigError              invalid configuration at start

Messages never contain secrets: they are shown to API callers and written to logs.
"""

from typing import Any, ClassVar


class ChainflowError(Exception):
    """Base of every error Chainflow raises on purpose."""

    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(ChainflowError):
    code = "invalid_input"
    title = "Invalid input"


class Unauthorized(ChainflowError):
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(ChainflowError):
    code = "forbidden"
    title = "Forbidden"


class NotFound(ChainflowError):
    code = "not_found"
    title = "Not found"


class Conflict(ChainflowError):
    code = "conflict"
    title = "Conflict"


class TooManyRequests(ChainflowError):
    code = "too_many_requests"
    title = "Too many requests"


class Unavailable(ChainflowError):
    code = "unavailable"
    title = "Service unavailable"


class ConfigError(ChainflowError):
    code = "config_error"
    title = "Invalid configuration"
