"""Chaos fixtures: a fresh anvil per scenario (faults must not leak between scenarios).

Under pytest-xdist (`./scripts/test` runs `-n 2 --dist loadgroup`) every chaos scenario is in
one group, so they run one after another on a single worker: each one starts an API, several
workers and an anvil, and two at once on 2 cores would stretch the timing they are about.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chainflow.infra.anvil import run_anvil
from tests.conftest import free_port

_HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.xdist_group("chaos"))


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    async with run_anvil(port=free_port()) as url:
        yield url
