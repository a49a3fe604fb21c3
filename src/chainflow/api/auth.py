"""Who is calling: the request's bearer token, authenticated once (key cache, then database).

The edge authenticates a request that carries a body before reading that body (gate.py) and
leaves the key in the ASGI scope; the route's scope check then finds it there.
"""

from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import Scope

from chainflow.api.resources import Resources
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.service import InvalidApiKey
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
