"""`UtcTimestamp`, the date-time of request bodies that is compared or stored in UTC: one
check for a transaction's `valid_until`, a schedule's times and a webhook replay's `since`."""

from datetime import datetime

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from chainflow.core.fields import UtcTimestamp
from chainflow.domain.schedules.schemas import ScheduleCreate, TriggerIn
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.webhooks.schemas import ReplayRequest

NAIVE = ("2026-01-01T00:00:00", "must include a timezone, e.g. 2026-01-01T00:00:00Z")
PAST_9999 = ("9999-12-31T23:00:00-02:00", "must fall within years 1 to 9999 in UTC")
BEFORE_1 = ("0001-01-01T00:00:00+14:00", "must fall within years 1 to 9999 in UTC")


@pytest.mark.parametrize(("text", "message"), [NAIVE, PAST_9999, BEFORE_1])
@pytest.mark.parametrize(
    ("model", "field"),
    [
        (TxCreate, "valid_until"),
        (TriggerIn, "at"),
        (ScheduleCreate, "start_at"),
        (ScheduleCreate, "end_at"),
        (ReplayRequest, "since"),
    ],
)
def test_every_use_refuses_alike(
    model: type[BaseModel], field: str, text: str, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate({field: text})
    errors = [e["msg"] for e in refused.value.errors() if e["loc"] == (field,)]
    assert errors == [f"Value error, {message}"]


def test_a_time_with_an_offset_is_kept_as_given() -> None:
    value = TypeAdapter(UtcTimestamp).validate_python("2026-01-01T09:00:00+09:00")
    assert value == datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    offset = value.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 9 * 3600
