"""Nothing shaped like a private key is ever echoed: generated key-shaped strings, put in
every position a caller controls (path, query, header, body value, field name), never come
back in a response or a log line, through the real app on both databases."""

import io
import json
import logging
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from chainflow.core.logging import configure_logging
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import add_anvil_chain
from tests.support.fixtures import ApiHarness

SINK = "0x000000000000000000000000000000000000dEaD"
HEX_64 = re.compile(r"[0-9a-fA-F]{64}")


def key_shapes(seed: int) -> list[tuple[str, str]]:
    """(text sent, the 64 key digits it holds): a key bare, prefixed, upper or mixed case,
    glued to more hex digits, inside a longer string, doubled."""
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible by design
    key = "".join(rng.choice("0123456789abcdef") for _ in range(64))
    mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in key)
    return [
        (key, key),
        ("0x" + key, key),
        ("0X" + key.upper(), key),
        (mixed, key),
        ("0x" + mixed, key),
        ("abc" + key + "de", key),
        ("label-" + key + "-end", key),
        ("k=0x" + key + "&x=1", key),
        (key + key[::-1], key),
    ]


Request = Callable[[str], tuple[str, str, dict[str, Any]]]


def positions(wallet_id: str) -> dict[str, Request]:
    """Every place a caller's text may be echoed: (method, path, httpx keyword arguments)."""

    def tx(**fields: Any) -> dict[str, Any]:
        return {"json": {"chain_id": 31337, "wallet": wallet_id, "to": SINK, **fields}}

    def chain(**fields: Any) -> dict[str, Any]:
        body = {"chain_id": 5, "name": "L", "native_symbol": "E", "eip1559": True}
        return {"json": body | {"confirmations": 1, "rpc_urls": ["http://127.0.0.1:1"]} | fields}

    return {
        "wallet path": lambda s: ("GET", f"/v1/wallets/{s}", {}),
        "wallet path (patch)": lambda s: ("PATCH", f"/v1/wallets/{s}", {"json": {"label": "a"}}),
        "lane path": lambda s: ("PUT", f"/v1/wallets/{s}/chains/31337", {}),
        "lane chain path": lambda s: ("GET", f"/v1/wallets/{wallet_id}/chains/{s}", {}),
        "transaction path": lambda s: ("GET", f"/v1/transactions/{s}", {}),
        "chain path": lambda s: ("GET", f"/v1/chains/{s}", {}),
        "wallet filter": lambda s: ("GET", "/v1/transactions", {"params": {"wallet": s}}),
        "cursor": lambda s: ("GET", "/v1/wallets", {"params": {"cursor": s}}),
        "status filter": lambda s: ("GET", "/v1/transactions", {"params": {"status": s}}),
        "body wallet": lambda s: ("POST", "/v1/transactions", tx(wallet=s)),
        "body to": lambda s: ("POST", "/v1/transactions", tx(to=s)),
        "body value": lambda s: ("POST", "/v1/transactions", tx(value=s)),
        "body data": lambda s: ("POST", "/v1/transactions", tx(data=s)),
        "function": lambda s: ("POST", "/v1/transactions", tx(function=f"f{s}(uint256)")),
        "uint arg": lambda s: ("POST", "/v1/transactions", tx(function="f(uint8)", args=[s])),
        "address arg": lambda s: ("POST", "/v1/transactions", tx(function="f(address)", args=[s])),
        "field name": lambda s: ("POST", "/v1/transactions", tx(**{s: 1})),
        "idempotency key": lambda s: (
            "POST",
            "/v1/transactions",
            tx() | {"headers": {"Idempotency-Key": s + "#0"}},
        ),
        "label": lambda s: ("POST", "/v1/wallets", {"json": {"generate": True, "label": s}}),
        "private key": lambda s: ("POST", "/v1/wallets", {"json": {"private_key": s + "1"}}),
        "chain name": lambda s: ("POST", "/v1/chains", chain(name=s)),
        "rpc url": lambda s: ("POST", "/v1/chains", chain(rpc_urls=[f"http://127.0.0.1:1/{s}"])),
        "bearer token": lambda s: ("GET", "/v1/wallets", {"headers": {"Authorization": s}}),
    }


@pytest.fixture
def log_stream() -> io.StringIO:
    """The production logging set-up, writing to a buffer the test reads."""
    configure_logging(json_format=True)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


async def test_no_position_echoes_a_key_shaped_string(
    api: ApiHarness, anvil_url: str, log_stream: io.StringIO
) -> None:
    async with unit_of_work(api.resources.sessionmaker) as session:
        await add_anvil_chain(session, anvil_url)
    admin = await api.key("admin")
    created = await api.client.post("/v1/wallets", headers=admin, json={"generate": True})
    echoed = []
    for name, build in positions(created.json()["id"]).items():
        for sent, key in key_shapes(seed=len(name)):
            method, path, kwargs = build(sent)
            headers = admin | kwargs.pop("headers", {})
            response = await api.client.request(method, path, headers=headers, **kwargs)
            assert response.status_code < 500, (name, response.text)
            seen = response.text + json.dumps(dict(response.headers))
            if key in seen.lower() or HEX_64.search(seen):
                echoed.append((name, sent, response.text))
    assert echoed == []
    assert not HEX_64.search(log_stream.getvalue()), log_stream.getvalue()
