"""Chaos fixtures: a fresh anvil per scenario (faults must not leak between scenarios)."""

from collections.abc import AsyncIterator

import pytest

from chainflow.infra.anvil import run_anvil
from tests.conftest import free_port


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    async with run_anvil(port=free_port()) as url:
        yield url
