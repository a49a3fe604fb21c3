"""FastAPI dependencies as Annotated aliases: resources, sessions, the caller's API key."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.api import auth, ratelimit
from chainflow.api.resources import Resources
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.apikeys.service import Scope
from chainflow.domain.audit.service import Actor
from chainflow.domain.chains.probe import ChainIdProbe, rpc_chain_id_probe
from chainflow.infra.net.urlguard import UrlGuard


# Dependencies are `async def` even with nothing to await: FastAPI runs a plain `def` one in a
# worker thread, a thread hop per dependency per request.
async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_sessionmaker(resources: ResourcesDep) -> async_sessionmaker[AsyncSession]:
    return resources.sessionmaker


SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


async def get_probe(resources: ResourcesDep) -> ChainIdProbe:
    settings = resources.settings
    guard = UrlGuard(allow_private=settings.rpc_allow_private_urls)
    return rpc_chain_id_probe(resources.http, timeout_s=settings.rpc_timeout_s, guard=guard)


ProbeDep = Annotated[ChainIdProbe, Depends(get_probe)]

_bearer = HTTPBearer(auto_error=False, description="an API key from `chainflow apikey create`")


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that authenticates the caller and checks one scope."""

    async def dependency(
        request: Request,
        resources: ResourcesDep,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        # `_credentials` only documents the scheme in OpenAPI; the header is read once, here
        # or at the edge, which has already authenticated a request that carries a body.
        key = auth.remembered(request.scope) or await auth.authenticate(
            resources, request.headers.get("authorization")
        )
        apikeys.require_scope(key, scope)
        await ratelimit.enforce(resources, request.scope, key)  # once per request
        return key

    return dependency


def actor(request: Request, key: ApiKey) -> Actor:
    """Who makes a change, for the audit log: the key and the client's address."""
    client = request.client
    return Actor(key_id=key.id, remote_addr=client.host if client is not None else None)


ReadKey = Annotated[ApiKey, Depends(require(Scope.READ))]
PoliciesKey = Annotated[ApiKey, Depends(require(Scope.POLICIES))]
WalletsKey = Annotated[ApiKey, Depends(require(Scope.WALLETS))]
AdminKey = Annotated[ApiKey, Depends(require(Scope.ADMIN))]
TxWriteKey = Annotated[ApiKey, Depends(require(Scope.TRANSACTIONS_WRITE))]
WebhooksKey = Annotated[ApiKey, Depends(require(Scope.WEBHOOKS))]
SchedulesKey = Annotated[ApiKey, Depends(require(Scope.SCHEDULES))]


def unrestricted_only(what: str) -> Any:
    """A router dependency refusing keys limited to some wallets or chains (403
    `key_restricted`) on routes that cannot narrow what they show or do to those yet."""

    async def dependency(request: Request, resources: ResourcesDep) -> None:
        key = auth.remembered(request.scope) or await auth.authenticate(
            resources, request.headers.get("authorization")
        )
        auth.remember(request.scope, key)  # the route's own key dependency reuses it
        restrictions_of(key).check_unrestricted(what)

    return Depends(dependency)
