"""The engine harness every transaction test here runs on (both databases, a real anvil)."""

from tests.support.engine import harness_fixture

harness = harness_fixture()
