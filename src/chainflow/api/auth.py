"""Who is calling: the request's bearer token, authenticated once (key cache, then database).

The edge authenticates a request that carries a body before reading that body (gate.py) and
leaves the key in the ASGI scope; the route's scope check then finds it there.
"""

import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import Scope

from chainflow.api.resources import Resources
from chainflow.core.clock import utcnow
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.service import ApiKeyExpired, InvalidApiKey
from chainflow.infra.db.uow import unit_of_work

_SCOPE_KEY = "chainflow.api_key"


async def authenticate(resources: Resources, authorization: str | None) -> ApiKey:
    """The live key named by an `Authorization: Bearer <key>` header. Raises: InvalidApiKey."""
    scheme, token = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not token:
        raise InvalidApiKey("send the API key as `Authorization: Bearer <key>`")
    key = resources.keys.get(token)
    if key is None:

        async def read() -> ApiKey:
            async with unit_of_work(resources.sessionmaker) as session:
                return await apikeys.authenticate(session, token)

        key = await resources.keys.load(token, read)
    apikeys.check_unexpired(key)  # a remembered key expires on time, not at its cache's end
    return key


def remember(scope: Scope, key: ApiKey) -> None:
    scope[_SCOPE_KEY] = key


def remembered(scope: Scope) -> ApiKey | None:
    """The key the edge already authenticated for this request, if any."""
    key = scope.get(_SCOPE_KEY)
    return key if isinstance(key, ApiKey) else None


class KeyWatch:
    """The key of a long request (an event stream), refused while it runs when a new request
    with it would be. Before each frame: a key the cache (`remembered`) still holds passes for
    a clock read and a hash; else it is authenticated again (`recheck`: the database, one read
    per cache time for every stream of that key). Without a cache (`remembered` None) the
    database is read at most once every `every_s`. An expired key fails at its expiry instant."""

    def __init__(
        self,
        recheck: Callable[[], Awaitable[object]],
        expires_at: datetime | None,
        *,
        remembered: Callable[[], bool] | None = None,
        every_s: float,
    ) -> None:
        self._recheck = recheck
        self._expires_at = expires_at
        self._remembered = remembered
        self._every_s = every_s
        self._next = time.monotonic() + every_s

    @classmethod
    def of(
        cls, resources: Resources, authorization: str | None, key: ApiKey, *, every_s: float
    ) -> "KeyWatch":
        _, token = get_authorization_scheme_param(authorization)

        async def recheck() -> ApiKey:
            return await authenticate(resources, authorization)

        def remembered() -> bool:
            return resources.keys.get(token) is not None

        cached = resources.keys.ttl_s > 0
        return cls(
            recheck, key.expires_at, remembered=remembered if cached else None, every_s=every_s
        )

    def wait_s(self, longest: float) -> float:
        """How long the request may wait for something before calling `check` again."""
        wait = min(longest, self._next - time.monotonic())
        if self._expires_at is not None:
            wait = min(wait, (self._expires_at - utcnow()).total_seconds())
        return max(wait, 0.0)

    async def check(self) -> None:
        """Raises: InvalidApiKey (revoked or gone), ApiKeyExpired."""
        if self._expires_at is not None and self._expires_at <= utcnow():
            raise ApiKeyExpired("the API key has expired")
        now = time.monotonic()
        if self._remembered is not None:
            if self._remembered():
                self._next = now + self._every_s
                return
        elif now < self._next:
            return
        await self._recheck()
        self._next = time.monotonic() + self._every_s
