"""Admission control's slots: what a request costs, and how many a request takes (the
refusal itself: test_edge.py)."""

import pytest

from chainflow.api.admission import Admission, cost_of


class TestCostOf:
    @pytest.mark.parametrize(
        ("method", "path", "query", "body_bytes", "slots"),
        [
            ("GET", "/v1/wallets/0xab", b"", 0, 1),
            ("GET", "/v1/transactions", b"", 0, 5),  # the default page of 100 rows
            ("GET", "/v1/transactions", b"status=queued&limit=500", 0, 25),
            ("GET", "/v1/wallets", b"limit=1", 0, 1),
            ("GET", "/v1/wallets", b"limit=abc", 0, 5),  # refused later by the route
            # As the route reads it (before: a raw `limit=500` alone counted, 1 slot each)
            ("GET", "/v1/transactions", b"limit=%35%30%30", 0, 25),
            ("GET", "/v1/transactions", b"limit=1&limit=500", 0, 25),
            ("GET", "/v1/events", b"%6Cimit=500", 0, 25),
            ("GET", "/v1/wallets", b"limit=500&limit=1", 0, 1),
            ("GET", "/v1/wallets", b"limit=9999999", 0, 25),  # refused later: at most 500
            # As pydantic's lax int reads it for the route (before: the default page, 5 slots)
            ("GET", "/v1/transactions", b"limit=%2B500", 0, 25),
            ("GET", "/v1/transactions", b"limit=+500", 0, 25),  # "+" decodes to a space
            ("GET", "/v1/transactions", b"limit=500+", 0, 25),
            ("GET", "/v1/transactions", b"limit=500.0", 0, 25),
            ("GET", "/v1/transactions", b"limit=5_00", 0, 25),
            ("GET", "/v1/transactions", b"limit=500.5", 0, 5),  # refused later by the route
            # Every list (before: only transactions, wallets and events; the others 1 slot)
            ("GET", "/v1/audit", b"limit=500", 0, 25),
            ("GET", "/v1/lanes", b"", 0, 5),
            ("GET", "/v1/schedules", b"limit=500", 0, 25),
            ("GET", "/v1/schedules/5b0e/runs", b"limit=500", 0, 25),
            ("GET", "/v1/webhooks", b"limit=500", 0, 25),
            ("GET", "/v1/webhooks/5b0e/deliveries", b"limit=500", 0, 25),
            ("GET", "/v1/transactions/5b0e/deliveries", b"limit=500", 0, 25),
            ("GET", "/v1/transactions/5b0e", b"limit=500", 0, 1),
            ("POST", "/v1/transactions", b"", 1_000, 1),
            ("POST", "/v1/transactions/batch", b"", 4 << 20, 129),
        ],
    )
    def test_slots(self, method: str, path: str, query: bytes, body_bytes: int, slots: int) -> None:
        scope = {"method": method, "path": path, "query_string": query}
        assert cost_of(scope, body_bytes) == slots

    def test_a_request_alone_may_always_enter(self) -> None:
        admission = Admission(10)
        assert admission.enter(129) == 10
        assert admission.enter(1) == 0
        admission.leave(10)
        assert admission.enter(1) == 1
