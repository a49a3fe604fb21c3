"""The engine harness every transaction test here runs on (both databases, a real anvil)."""

from tests.support.engine import FAST_STUCK, harness_fixture

harness = harness_fixture()


# Stuck after 1 s (FAST_STUCK), for a test that waits for a bump while mining is
# stopped: no block comes, so only the time rule bumps.
fast_stuck_harness = harness_fixture(config=FAST_STUCK)
