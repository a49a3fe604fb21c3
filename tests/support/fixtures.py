"""An API harness: the real app with its lifespan, an HTTP client and keys per scope."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from chainflow.api.resources import Resources
from chainflow.domain.apikeys.service import create_api_key
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.engine import SINK


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


async def prepare_sender(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    """The anvil chain, a generated wallet enabled on it, and keys to write transactions
    (`write`) and manage wallets (`wallets`)."""
    async with unit_of_work(api.resources.sessionmaker) as session:
        await add_anvil_chain(session, anvil_url)
    wallets = await api.key("wallets")
    created = await api.client.post(
        "/v1/wallets", headers=wallets, json={"generate": True, "chain_ids": [ANVIL_CHAIN_ID]}
    )
    return {
        "wallet": created.json(),
        "write": await api.key("transactions:write"),
        "wallets": wallets,
    }


def tx_body(sender: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A POST /v1/transactions body from `prepare_sender`'s wallet to SINK."""
    return {
        "chain_id": ANVIL_CHAIN_ID,
        "wallet": sender["wallet"]["address"],
        "to": SINK,
        **extra,
    }
