"""The arrays `insert_rows` and `update_rows` bind on PostgreSQL: one per name, the rows'
values in order, enum members as their values, JSON serialized as the engine does."""

import uuid

from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.bulk import _arrays, plain_value
from chainflow.infra.db.engine import dumps_json


def by_value(rows: list[dict[str, object]], json_names: set[str]) -> dict[str, list[object]]:
    """The arrays as built before: value by value."""
    return {
        f"a_{name}": [
            (None if row[name] is None else dumps_json(row[name]))
            if name in json_names
            else plain_value(row[name])
            for row in rows
        ]
        for name in rows[0]
    }


def test_arrays_are_the_rows_values_by_name() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    rows: list[dict[str, object]] = [
        {"id": ids[0], "status": TxStatus.MINED, "n": 1, "detail": {"event": "x", "n": 2**70}},
        {"id": ids[1], "status": "confirmed", "n": None, "detail": None},
        {"id": ids[2], "status": TxStatus.SIGNED, "n": 3, "detail": {"a": [1, "b"]}},
    ]
    got = _arrays(rows, list(rows[0]), {"detail"})
    assert got == by_value(rows, {"detail"})
    assert got["a_status"] == ["mined", "confirmed", "signed"]
    assert [type(v) for v in got["a_status"]] == [str, str, str]
    assert got["a_detail"][1] is None
    assert got["a_id"] == ids


def test_one_name_and_columns_without_enums() -> None:
    rows: list[dict[str, object]] = [{"id": i} for i in range(5)]
    assert _arrays(rows, ["id"]) == {"a_id": [0, 1, 2, 3, 4]}
    rows = [{"id": i, "status": TxStatus.QUEUED} for i in range(2)]
    assert _arrays(rows, ["id", "status"]) == {"a_id": [0, 1], "a_status": ["queued", "queued"]}
