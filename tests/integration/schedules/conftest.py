"""Schedules run by the real engine on a real anvil, on PostgreSQL and SQLite."""

from tests.support.engine import harness_fixture

harness = harness_fixture()
