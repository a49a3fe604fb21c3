"""FastAPI dependencies as Annotated aliases: resources, sessions, the caller's API key."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.api.resources import Resources
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.service import InvalidApiKey, Scope
from chainflow.domain.chains.probe import ChainIdProbe, rpc_chain_id_probe
from chainflow.infra.db.uow import unit_of_work


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
    return rpc_chain_id_probe(resources.http, timeout_s=resources.settings.rpc_timeout_s)


ProbeDep = Annotated[ChainIdProbe, Depends(get_probe)]

_bearer = HTTPBearer(auto_error=False, description="an API key from `chainflow apikey create`")


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that authenticates the caller and checks one scope."""

    async def dependency(
        resources: ResourcesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise InvalidApiKey("send the API key as `Authorization: Bearer <key>`")
        token = credentials.credentials
        key = resources.keys.get(token)
        if key is None:
            read_at = resources.keys.now()
            async with unit_of_work(resources.sessionmaker) as session:
                key = await apikeys.authenticate(session, token)
            resources.keys.put(token, key, read_at=read_at)
        apikeys.require_scope(key, scope)
        return key

    return dependency


ReadKey = Annotated[ApiKey, Depends(require(Scope.READ))]
WalletsKey = Annotated[ApiKey, Depends(require(Scope.WALLETS))]
AdminKey = Annotated[ApiKey, Depends(require(Scope.ADMIN))]
TxWriteKey = Annotated[ApiKey, Depends(require(Scope.TRANSACTIONS_WRITE))]
