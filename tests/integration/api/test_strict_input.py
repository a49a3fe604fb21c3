"""Every request body is read strictly, through the real app on both databases: text that is
not valid Unicode, a number given as another JSON type, and an address that is not exactly an
address are 422 problems that store nothing, wherever they appear."""

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from chainflow.core.bodies import RequestBody
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import add_anvil_chain
from tests.support.fixtures import ApiHarness

SINK = "0x000000000000000000000000000000000000dEaD"
LONE = "\ud800"
KEY_HEX = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's #1
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture
async def ready(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    """The anvil chain, one wallet (ADDRESS) on it and an admin key."""
    async with unit_of_work(api.resources.sessionmaker) as session:
        await add_anvil_chain(session, anvil_url)
    admin = await api.key("admin")
    created = await api.client.post(
        "/v1/wallets", headers=admin, json={"private_key": KEY_HEX, "chain_ids": [31337]}
    )
    return {"admin": admin, "wallet": created.json()}


def tx(ready: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"chain_id": 31337, "wallet": ready["wallet"]["address"], "to": SINK, **fields}


def chain(**fields: Any) -> dict[str, Any]:
    body = {
        "chain_id": 5,
        "name": "Local",
        "native_symbol": "ETH",
        "rpc_urls": ["http://127.0.0.1:1"],
        "eip1559": True,
        "confirmations": 1,
    }
    return body | fields


async def send(api: ApiHarness, ready: dict[str, Any], method: str, path: str, body: Any) -> Any:
    # Python's json.dumps writes a lone surrogate as the escape "\ud800", as a client would.
    path = path.format(wallet=ready["wallet"]["id"])
    headers = ready["admin"] | {"content-type": "application/json"}
    return await api.client.request(method, path, headers=headers, content=json.dumps(body))


async def stored_counts(api: ApiHarness, ready: dict[str, Any]) -> tuple[int, int, int]:
    admin = ready["admin"]
    counts = []
    for path in ("/v1/transactions", "/v1/wallets", "/v1/chains"):
        counts.append(len((await api.client.get(path, headers=admin)).json()["items"]))
    return counts[0], counts[1], counts[2]


def lone_surrogate_cases(ready: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """A lone surrogate in every string of every body, at every depth, and in a field name."""
    return [
        ("POST", "/v1/wallets", {"generate": True, "label": LONE}),
        ("PATCH", "/v1/wallets/{wallet}", {"label": "ok" + LONE}),
        ("POST", "/v1/chains", chain(name=LONE)),
        ("POST", "/v1/chains", chain(native_symbol=LONE)),
        ("POST", "/v1/chains", chain(rpc_urls=[f"http://x{LONE}.example"])),
        ("PATCH", "/v1/chains/31337", {"name": LONE}),
        ("POST", "/v1/transactions", tx(ready, function="f(string)", args=[LONE])),
        ("POST", "/v1/transactions", tx(ready, function="f(string[])", args=[["a", LONE]])),
        ("POST", "/v1/transactions", tx(ready, function=f"f{LONE}(string)", args=["a"])),
        ("POST", "/v1/transactions", tx(ready, wallet=LONE)),
        ("POST", "/v1/transactions", tx(ready, to=LONE)),
        ("POST", "/v1/transactions", tx(ready, data="0x" + LONE)),
        ("POST", "/v1/transactions", tx(ready, value=LONE)),
        ("POST", "/v1/transactions", tx(ready, valid_until="2030-01-01T00:00:00Z" + LONE)),
        ("POST", "/v1/transactions", {**tx(ready), LONE: 1}),
        ("POST", "/v1/transactions/batch", {"transactions": [tx(ready), tx(ready, to=LONE)]}),
    ]


class TestLoneSurrogates:
    async def test_every_string_field_is_a_422_that_stores_nothing(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        before = await stored_counts(api, ready)
        for method, path, body in lone_surrogate_cases(ready):
            response = await send(api, ready, method, path, body)
            assert response.status_code == 422, (path, body, response.text)
            assert response.json()["code"] == "validation_error"
            assert "Unicode" in response.json()["detail"]
        assert await stored_counts(api, ready) == before
        wallet = await api.client.get(
            f"/v1/wallets/{ready['wallet']['id']}", headers=ready["admin"]
        )
        assert wallet.json()["label"] is None

    async def test_surrogate_pairs_are_valid_text(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        label = "\ud83d\ude00"  # json.loads joins the pair into one emoji: valid
        response = await send(api, ready, "PATCH", "/v1/wallets/{wallet}", {"label": label})
        assert (response.status_code, response.json()["label"]) == (200, "\U0001f600")


def raw_tx(ready: dict[str, Any], extra: str) -> str:
    """A submission body as text, `extra` written after its own fields."""
    return json.dumps(tx(ready, value="1"))[:-1] + ", " + extra + "}"


class TestDuplicateKeys:
    async def test_an_object_with_a_key_twice_is_a_422_that_stores_nothing(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        # Before: the last value won, so `value` was the larger amount for this API and the
        # smaller one for anything in front of it that reads the first (and 202 Accepted).
        headers = ready["admin"] | {"content-type": "application/json"}
        wallet = f"/v1/wallets/{ready['wallet']['id']}"
        cases = [
            ("POST", "/v1/transactions", raw_tx(ready, '"value": "1000000000000000000"')),
            (
                "POST",
                "/v1/transactions/batch",
                '{"transactions": [' + raw_tx(ready, f'"to": "{SINK}"') + "]}",
            ),
            ("POST", "/v1/transactions/batch", '{"transactions": [], "transactions": []}'),
            ("PATCH", wallet, '{"label": "a", "label": "b"}'),
        ]
        before = await stored_counts(api, ready)
        for method, path, body in cases:
            response = await api.client.request(method, path, headers=headers, content=body)
            assert response.status_code == 422, (path, body, response.text)
            assert response.json()["code"] == "json_duplicate_key", response.text
        assert await stored_counts(api, ready) == before
        assert (await api.client.get(wallet, headers=ready["admin"])).json()["label"] is None

    async def test_the_same_key_in_different_objects_is_fine(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        body = {"transactions": [tx(ready, value="1"), tx(ready, value="2")]}
        response = await send(api, ready, "POST", "/v1/transactions/batch", body)
        assert response.status_code == 202, response.text


class TestLabels:
    async def test_a_label_with_a_control_character_is_a_422_that_stores_nothing(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        # Before: stored, and `chainflow wallet list` printed it raw: a "\r" or "\n" forged
        # the operator's lines, an escape sequence steered the terminal (the CLI's own
        # --label refuses them for that reason).
        before = await stored_counts(api, ready)
        for label in ("a\nb", "ok\rFAKE", "\x1b]0;title\x07", "\x1b[2J", "x\x7f", "x\x85"):
            for method, path, body in [
                ("PATCH", "/v1/wallets/{wallet}", {"label": label}),
                ("POST", "/v1/wallets", {"generate": True, "label": label}),
            ]:
                response = await send(api, ready, method, path, body)
                assert response.status_code == 422, (label, response.text)
                assert "control characters" in response.json()["detail"]
        assert await stored_counts(api, ready) == before
        wallet = f"/v1/wallets/{ready['wallet']['id']}"
        assert (await api.client.get(wallet, headers=ready["admin"])).json()["label"] is None
        fine = await send(api, ready, "PATCH", "/v1/wallets/{wallet}", {"label": "ops ü \u00a0x"})
        assert fine.status_code == 200, fine.text


# (field, value) pairs whose JSON type is not the field's: each must be refused, not coerced.
WRONG_TYPES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/transactions", {"chain_id": True}),
    ("POST", "/v1/transactions", {"chain_id": 31337.0}),
    ("POST", "/v1/transactions", {"chain_id": "31337"}),
    ("POST", "/v1/transactions", {"gas_limit": "21000"}),
    ("POST", "/v1/transactions", {"gas_limit": 21000.0}),
    ("POST", "/v1/transactions", {"gas_limit": True}),
    ("POST", "/v1/transactions", {"value": True}),
    ("POST", "/v1/transactions", {"value": 1.0}),
    ("POST", "/v1/transactions", {"valid_until": 1_900_000_000}),
    ("POST", "/v1/wallets", {"generate": 1}),
    ("POST", "/v1/wallets", {"generate": "true"}),
    ("POST", "/v1/wallets", {"chain_ids": [True]}),
    ("POST", "/v1/wallets", {"chain_ids": ["31337"]}),
    ("POST", "/v1/chains", {"confirmations": True}),
    ("POST", "/v1/chains", {"confirmations": 1.0}),
    ("POST", "/v1/chains", {"eip1559": 1}),
    ("POST", "/v1/chains", {"block_time_s": True}),
    ("POST", "/v1/chains", {"block_time_s": "2"}),
    ("PATCH", "/v1/chains/31337", {"enabled": 0}),
    ("PATCH", "/v1/chains/31337", {"confirmations": "3"}),
]


class TestStrictTypes:
    @pytest.mark.parametrize(("method", "path", "fields"), WRONG_TYPES)
    async def test_a_value_of_another_json_type_is_refused(
        self, api: ApiHarness, ready: dict[str, Any], method: str, path: str, fields: Any
    ) -> None:
        base: dict[str, Any] = {
            "/v1/transactions": tx(ready),
            "/v1/wallets": {"generate": True},
            "/v1/chains": chain(),
        }.get(path, {})
        response = await send(api, ready, method, path, base | fields)
        assert response.status_code == 422, response.text
        [field] = fields
        assert response.json()["errors"][0]["loc"][:2] == ["body", field], response.text
        assert (await stored_counts(api, ready))[0] == 0

    async def test_the_right_json_types_are_accepted(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        body = tx(ready, value=5, gas_limit=21000, valid_until="2030-01-01T00:00:00Z")
        response = await send(api, ready, "POST", "/v1/transactions", body)
        assert response.status_code == 202, response.text
        assert response.json()["value"] == "5"  # wei: a decimal string, or an exact integer

    async def test_every_body_is_strict_for_every_number_and_boolean(self, api: ApiHarness) -> None:
        """Generated from the OpenAPI document and the schemas: a route or field added later
        is covered without a new row here."""
        bodies = body_schema_names(api)
        assert bodies >= {"TxCreate", "TxBatchCreate", "WalletCreate", "ChainUpdate"}
        strict = request_body_models()
        assert bodies <= strict.keys(), bodies - strict.keys()  # every body is a RequestBody
        for name in bodies:
            model = strict[name]
            for field, bad in wrong_values(model):
                errors = validation_errors(model, {field: bad})
                assert any(e["loc"][:1] == (field,) for e in errors), (name, field, bad)


def body_schema_names(api: ApiHarness) -> set[str]:
    names = set()
    for operations in api.app.openapi()["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
            if ref:
                names.add(ref.rsplit("/", 1)[-1])
    return names


def request_body_models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    stack: list[type[BaseModel]] = [RequestBody]
    while stack:
        for model in stack.pop().__subclasses__():
            found[model.__name__] = model
            stack.append(model)
    return found


_BAD = {"integer": [True, 1.0, "1"], "number": [True, "1.5"], "boolean": [1, "true"]}


def wrong_values(model: type[BaseModel]) -> list[tuple[str, Any]]:
    values: list[tuple[str, Any]] = []
    for name, spec in model.model_json_schema()["properties"].items():
        for option in spec.get("anyOf", [spec]):
            kind = str(option.get("type", ""))
            values += [(name, bad) for bad in _BAD.get(kind, [])]
            item_kind = str(option.get("items", {}).get("type", "")) if kind == "array" else ""
            values += [(name, [bad]) for bad in _BAD.get(item_kind, [])]
    return values


def validation_errors(model: type[BaseModel], data: dict[str, Any]) -> list[Any]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return list(exc.errors())
    return []


class TestAddresses:
    @pytest.mark.parametrize(
        "to",
        [
            "0x000000000000000000000000000000000000DeAd",  # wrong checksum (EIP-55: dEaD)
            "0x70997970c51812dc3a010c7d01b50e0d17dc79C8",  # one letter changed case
            "0X000000000000000000000000000000000000dEaD",
            "000000000000000000000000000000000000dEaD",
            "0x000000000000000000000000000000000000dEaDaa",
        ],
    )
    async def test_to_is_never_repaired(
        self, api: ApiHarness, ready: dict[str, Any], to: str
    ) -> None:
        response = await send(api, ready, "POST", "/v1/transactions", tx(ready, to=to))
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["body", "to"]

    @pytest.mark.parametrize("to", [SINK.lower(), "0x" + SINK[2:].upper(), SINK])
    async def test_all_lower_all_upper_and_checksummed_are_valid(
        self, api: ApiHarness, ready: dict[str, Any], to: str
    ) -> None:
        response = await send(api, ready, "POST", "/v1/transactions", tx(ready, to=to))
        assert (response.status_code, response.json()["to"]) == (202, SINK)

    async def test_wallet_references_in_body_path_and_query(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        one_flipped = "0x70997970c51812dc3A010C7d01b50e0d17dc79C8"
        for wrong in (one_flipped, "0X" + ADDRESS[2:], ADDRESS[2:]):
            body = await send(api, ready, "POST", "/v1/transactions", tx(ready, wallet=wrong))
            assert body.status_code == 422, body.text
            path = await api.client.get(f"/v1/wallets/{wrong}", headers=ready["admin"])
            assert (path.status_code, path.json()["code"]) == (422, "invalid_address")
            query = await api.client.get(
                "/v1/transactions", params={"wallet": wrong}, headers=ready["admin"]
            )
            assert (query.status_code, query.json()["code"]) == (422, "invalid_address")
        for good in (ADDRESS.lower(), "0x" + ADDRESS[2:].upper(), ADDRESS):
            found = await api.client.get(f"/v1/wallets/{good}", headers=ready["admin"])
            assert found.json()["id"] == ready["wallet"]["id"]
            sent = await send(api, ready, "POST", "/v1/transactions", tx(ready, wallet=good))
            assert sent.status_code == 202, sent.text

    @pytest.mark.parametrize(
        ("function", "args"),
        [
            ("transfer(address,uint256)", ["0x000000000000000000000000000000000000DEAd", 1]),
            ("transfer(address,uint256)", ["0X000000000000000000000000000000000000dead", 1]),
            ("transfer(address,uint256)", ["000000000000000000000000000000000000dead", 1]),
            ("transfer(address,uint256)", [SINK, "0X10"]),
            ("transfer(address,uint256)", [SINK, "1_000"]),
            ("transfer(address,uint256)", [SINK, True]),
            ("f(address[])", [[SINK, "0x000000000000000000000000000000000000DEAd"]]),
            ("f(bytes)", ["0X1234"]),
            ("f(bytes)", ["1234"]),
            ("f(bytes32)", ["0X" + "00" * 32]),
        ],
    )
    async def test_call_arguments_are_read_as_strictly(
        self, api: ApiHarness, ready: dict[str, Any], function: str, args: list[Any]
    ) -> None:
        body = tx(ready, function=function, args=args)
        response = await send(api, ready, "POST", "/v1/transactions", body)
        assert (response.status_code, response.json()["code"]) == (422, "invalid_function_call")

    async def test_data_with_0X_prefix_is_refused(
        self, api: ApiHarness, ready: dict[str, Any]
    ) -> None:
        response = await send(api, ready, "POST", "/v1/transactions", tx(ready, data="0X1234"))
        assert response.status_code == 422, response.text
