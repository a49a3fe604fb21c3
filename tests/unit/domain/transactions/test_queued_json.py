"""The answer to a queued submission: `queued_json` (orjson, the hot path) is byte for byte
`TxRead.queued(...).model_dump_json(by_alias=True)`, its fields in TxRead's order."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID

from chainflow.core.types import ChainId, TxId, WalletId, Wei
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.transactions.schemas import TxRead, queued_json
from chainflow.domain.transactions.state import TxKind, TxStatus

AT = datetime(2026, 12, 7, 5, 36, 39, 802517, tzinfo=UTC)


def request(**changes: Any) -> NewRequest:
    values: dict[str, Any] = {
        "id": TxId(uuid.uuid4()),
        "kind": TxKind.REQUEST,
        "api_key_id": uuid.uuid4(),
        "idempotency_key": None,
        "request_hash": "ab" * 32,
        "chain_id": ChainId(31337),
        "wallet_id": WalletId(uuid.uuid4()),
        "from_address": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "to_address": "0x000000000000000000000000000000000000dEaD",
        "value_wei": Wei(10**18),
        "data": b"",
        "gas_limit": None,
        "max_fee_per_gas_cap": None,
        "max_priority_fee_per_gas_cap": None,
        "valid_until": None,
        "status": TxStatus.QUEUED,
        "cancel_requested": False,
        "confirmations": 0,
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(changes)
    return NewRequest(**values)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"value_wei": Wei(0), "data": bytes.fromhex("a9059cbb" + "00" * 64)},
        {"value_wei": Wei(2**256 - 1), "gas_limit": 21_000, "max_fee_per_gas_cap": Wei(7)},
        {"valid_until": AT + timedelta(hours=1), "created_at": AT.replace(microsecond=0)},
        {"created_at": AT.replace(microsecond=5), "updated_at": AT.replace(microsecond=120_000)},
        {"created_at": AT.astimezone(timezone(timedelta(hours=2)))},
        {"wallet_id": AsyncpgUUID(str(uuid.uuid4())), "id": AsyncpgUUID(str(uuid.uuid4()))},
        {"valid_until": datetime(2027, 1, 1, tzinfo=UTC), "idempotency_key": "retry-1"},
    ],
)
def test_the_same_bytes_as_the_model(changes: dict[str, Any]) -> None:
    queued = request(**changes)
    assert queued_json(queued) == TxRead.queued(queued).model_dump_json(by_alias=True).encode()


def test_every_field_of_the_view_in_its_order() -> None:
    names = [field.alias or name for name, field in TxRead.model_fields.items()]
    assert list(orjson.loads(queued_json(request()))) == names
