"""A database that answers and refuses us (no such database, no such role) is an error at
once, not a wait: waiting mends an unreachable database, never a wrong
CHAINFLOW_DATABASE_URL, and a worker retrying it forever would hide the mistake."""

import asyncio

import pytest
from sqlalchemy.engine import make_url

from chainflow.cli.runtime import wait_for_database
from chainflow.core.errors import ConfigError
from chainflow.core.settings import Settings

pytestmark = [pytest.mark.parametrize("dialect", ["postgresql"])]


@pytest.mark.parametrize(
    ("part", "reason"),
    [("database", "no such database"), ("username", "invalid authorization")],
)
async def test_a_refusal_is_an_error_at_once_not_a_wait(
    settings: Settings, part: str, reason: str
) -> None:
    url = make_url(settings.resolved_database_url)
    url = url.set(database="chainflow_no_such_db") if part == "database" else url
    url = url.set(username="chainflow_no_such_role") if part == "username" else url
    wrong = settings.model_copy(update={"database_url": url.render_as_string(False)})
    with pytest.raises(ConfigError) as refused:
        await asyncio.wait_for(wait_for_database(wrong, asyncio.Event()), timeout=20)
    assert reason in refused.value.detail
    assert "CHAINFLOW_DATABASE_URL" in refused.value.detail
