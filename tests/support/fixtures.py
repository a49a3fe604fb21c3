"""An API harness: the real app with its lifespan, an HTTP client and keys per scope."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from chainflow.api.resources import Resources
from chainflow.domain.apikeys.service import create_api_key
from chainflow.infra.db.uow import unit_of_work


@dataclass
class ApiHarness:
    app: FastAPI
    client: httpx.AsyncClient
    resources: Resources

    async def key(self, *scopes: str) -> dict[str, str]:
        """Authorization headers for a new key with these scopes."""
        async with unit_of_work(self.resources.sessionmaker) as session:
            _, token = await create_api_key(session, scopes)
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def open_api(app: FastAPI) -> AsyncIterator[ApiHarness]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield ApiHarness(app=app, client=client, resources=app.state.resources)
