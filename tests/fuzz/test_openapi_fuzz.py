"""Fuzz every operation of the OpenAPI document with schemathesis, against the real app.

The app runs in-process (ASGI, with its lifespan) on a real database, SQLite and PostgreSQL,
with the local anvil chain, a wallet on it and a transaction already there; every request
carries an admin API key, so generated inputs reach the handlers. Each operation gets positive
and negative inputs, and positive inputs that name the existing chain, wallet and transaction
(in the path, and as `chain_id`/`wallet` of a plain transfer in the body); the chain, wallet and
lane are made usable again before each operation. For every input the test checks that:

- no response has a status >= 500 (and the app raises nothing), and
- every 4xx response is RFC 9457 `application/problem+json` whose JSON body has `type`,
  `title` and `status`, with `status` equal to the HTTP status.

Hypothesis drives one operation at a time from a worker thread; each request goes back to the
test's event loop, where the app and its database engine live. Every failing operation is
reported, each with its smallest input, a curl command and the traceback.
"""

import asyncio
import json
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode

from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.fixtures import ApiHarness

CI_EXAMPLES = 12
"""Inputs per operation in CI (about 50 operations: about 60 s per database on a quiet machine)."""
FULL_EXAMPLES = 60
"""Inputs per operation in scripts/chaos (the `chaos_full` variant)."""
PROBLEM_JSON = "application/problem+json"
# A 200 here never ends (Server-Sent Events): its refusals and its stream are tested in
# tests/integration/api/test_events_api.py and tests/e2e/test_event_stream.py.
ENDLESS = {"/v1/events/stream"}
SINK = "0x000000000000000000000000000000000000dEaD"
_PATH_PARAMETER = re.compile(r"{([^}]+)}")

AnyCase = Case[Any]
Operation = APIOperation[Any, Any, Any, Any]
Send = Callable[[AnyCase], httpx.Response]


def check_response(response: httpx.Response) -> None:
    """The two properties every response must have."""
    status = response.status_code
    assert status < 500, f"server error {status}: {response.text}"
    if status < 400:
        return
    content_type = response.headers.get("content-type", "")
    assert content_type.split(";")[0].strip() == PROBLEM_JSON, (
        f"{status} with content-type {content_type!r}: {response.text}"
    )
    body = response.json()
    assert isinstance(body, dict), f"{status} problem body is not an object: {response.text}"
    missing = {"type", "title", "status"} - body.keys()
    assert not missing, f"{status} problem body lacks {sorted(missing)}: {response.text}"
    assert body["status"] == status, f"{status} problem body says status {body['status']!r}"


async def send_case(
    client: httpx.AsyncClient, case: AnyCase, auth: dict[str, str]
) -> httpx.Response:
    """Send a generated case through the harness client, serialized as schemathesis would."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url), headers=auth)
    content: bytes | str | None = None
    if "json" in kwargs:
        content = json.dumps(kwargs.pop("json"), allow_nan=False).encode()
    elif "data" in kwargs:
        content = kwargs.pop("data")
    headers = dict(kwargs.pop("headers") or {})
    cookies = kwargs.pop("cookies", None)
    if cookies:
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return await client.request(
        kwargs.pop("method"),
        kwargs.pop("url"),
        params=kwargs.pop("params", None),
        headers=headers,
        content=content,
    )


@dataclass(frozen=True)
class Known:
    """Values of things that exist: path parameters and body fields set to them."""

    path: dict[str, Any]
    body: dict[str, Any]

    def apply(self, case: AnyCase) -> AnyCase:
        """Point the generated body's fields (those it has) at things that exist."""
        if isinstance(case.body, dict):
            case.body.update({k: v for k, v in self.body.items() if k in case.body})
        return case


def fuzz(
    operation: Operation, send: Send, known: Known, auth: dict[str, str], examples: int
) -> None:
    """Run Hypothesis over one operation; raise its (smallest) failures."""
    names = set(_PATH_PARAMETER.findall(operation.path))
    fixed = {name: value for name, value in known.path.items() if name in names}
    strategies = [
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        # Random ids and wallets only ever reach "not found"; these reach the later steps.
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=fixed).map(
            known.apply
        ),
    ]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=st.one_of(strategies))
    def run(case: AnyCase) -> None:
        try:
            check_response(send(case))
        except Exception as exc:
            exc.add_note(f"Reproduce with:\n{case.as_curl_command(headers=auth)}")
            raise

    run()


async def seed(api: ApiHarness, anvil_url: str, auth: dict[str, str]) -> Known:
    """The anvil chain, a wallet on it and a queued transaction."""
    async with unit_of_work(api.resources.sessionmaker) as session:
        await add_anvil_chain(session, anvil_url)
    wallet = await api.client.post(
        "/v1/wallets", headers=auth, json={"generate": True, "chain_ids": [ANVIL_CHAIN_ID]}
    )
    assert wallet.status_code == 201, wallet.text
    address = wallet.json()["address"]
    tx = await api.client.post(
        "/v1/transactions",
        headers=auth,
        json={"chain_id": ANVIL_CHAIN_ID, "wallet": address, "to": SINK, "value": "1"},
    )
    assert tx.status_code == 202, tx.text
    return Known(
        path={"chain_id": ANVIL_CHAIN_ID, "wallet_ref": address, "tx_id": tx.json()["id"]},
        # A plain transfer from the seeded wallet: the submission gets past the payload checks.
        body={
            "chain_id": ANVIL_CHAIN_ID,
            "wallet": address,
            "chain_ids": [ANVIL_CHAIN_ID],
            "data": None,
            "function": None,
            "args": None,
        },
    )


async def restore(api: ApiHarness, auth: dict[str, str], known: Known) -> None:
    """Undo what fuzzing an operation may have changed: chain, wallet and lane usable again."""
    chain = f"/v1/chains/{ANVIL_CHAIN_ID}"
    wallet = f"/v1/wallets/{known.path['wallet_ref']}"
    for method, path, body in [
        (
            "PATCH",
            chain,
            {"enabled": True, "max_fee_per_gas_cap": None, "max_priority_fee_per_gas_cap": None},
        ),
        ("PATCH", wallet, {"status": "active"}),
        ("PUT", f"{wallet}/chains/{ANVIL_CHAIN_ID}", None),
    ]:
        response = await api.client.request(method, path, headers=auth, json=body)
        assert response.status_code == 200, response.text


async def test_every_operation_answers_below_500_and_4xx_as_problem_json(
    api: ApiHarness, anvil_url: str
) -> None:
    await fuzz_every_operation(api, anvil_url, examples=CI_EXAMPLES)


@pytest.mark.chaos_full
@pytest.mark.timeout(3600)
async def test_every_operation_many_inputs(api: ApiHarness, anvil_url: str) -> None:
    await fuzz_every_operation(api, anvil_url, examples=FULL_EXAMPLES)


async def fuzz_every_operation(api: ApiHarness, anvil_url: str, *, examples: int) -> None:
    auth = await api.key("admin")
    known = await seed(api, anvil_url, auth)
    document = (await api.client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    loop = asyncio.get_running_loop()

    def send(case: AnyCase) -> httpx.Response:
        future = asyncio.run_coroutine_threadsafe(send_case(api.client, case, auth), loop)
        return future.result(timeout=60)

    failures: list[str] = []
    operations: list[Operation] = [
        op for path in schema if path not in ENDLESS for op in schema[path].values()
    ]
    for operation in operations:
        await restore(api, auth, known)
        try:
            await asyncio.to_thread(fuzz, operation, send, known, auth, examples)
        except Exception as exc:
            failures.append(f"== {operation.label}\n" + "".join(traceback.format_exception(exc)))
    assert not failures, "\n\n".join(failures)
