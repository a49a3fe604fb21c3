"""Subscriptions, the retry schedule with jitter and Retry-After, and the schedule setting."""

import random
from datetime import UTC, datetime

import pytest

from chainflow.core.schedule import parse_retry_schedule
from chainflow.core.settings import Settings
from chainflow.domain.webhooks.rules import (
    MAX_RETRY_AFTER_S,
    Subscription,
    parse_retry_after,
    retry_delay_s,
)

W1, W2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


class TestSubscription:
    @pytest.mark.parametrize(
        ("globs", "event_type", "matches"),
        [
            (["*"], "transaction.confirmed", True),
            (["transaction.*"], "transaction.confirmed", True),
            (["transaction.*"], "wallet.low_balance", False),
            (["transaction.confirmed"], "transaction.confirmed", True),
            (["transaction.confirmed"], "transaction.confirmed.x", False),
            (["*.failed"], "schedule.run.failed", True),
            (["transaction.?onfirmed"], "transaction.confirmed", False),  # ? is not a glob
        ],
    )
    def test_event_type_globs(self, globs: list[str], event_type: str, matches: bool) -> None:
        rule = Subscription(globs)
        assert rule.matches(event_type, wallet_id=None, chain_id=None) is matches

    def test_wallet_and_chain_filters(self) -> None:
        rule = Subscription(["*"], wallet_ids=[W1], chain_ids=[1])
        assert rule.matches("t", wallet_id=W1, chain_id=1)
        assert not rule.matches("t", wallet_id=W2, chain_id=1)
        assert not rule.matches("t", wallet_id=W1, chain_id=137)
        assert rule.matches("webhook.endpoint.disabled", wallet_id=None, chain_id=None)


class TestRetryDelay:
    def test_follows_the_schedule_within_the_jitter(self) -> None:
        schedule = (5.0, 300.0, 1800.0)
        rng = random.Random(7)  # noqa: S311 - jitter, not a secret
        for attempts, base in enumerate(schedule, start=1):
            delay = retry_delay_s(schedule, attempts, rng=rng)
            assert delay is not None
            assert base * 0.9 <= delay <= base * 1.1
        assert retry_delay_s(schedule, 4) is None

    def test_retry_after_lengthens_never_shortens_and_is_bounded(self) -> None:
        assert (retry_delay_s((1.0,), 1, retry_after_s=30) or 0) >= 30
        assert (retry_delay_s((100.0,), 1, retry_after_s=1) or 0) >= 90
        assert retry_delay_s((1.0,), 1, retry_after_s=10**9) == MAX_RETRY_AFTER_S

    def test_the_default_schedule_spans_about_28_hours(self) -> None:
        total = sum(parse_retry_schedule(Settings().webhook_retry_schedule))
        assert 27 * 3600 <= total <= 29 * 3600


class TestRetryAfter:
    NOW = datetime(2026, 1, 1, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("header", "seconds"),
        [
            (None, None),
            ("", None),
            ("120", 120.0),
            ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),
            ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),
            ("soon", None),
            ("-5", None),
            ("99999999999999999999", 10.0**9),
            ("\u00b2", None),  # SUPERSCRIPT TWO: isdigit() True, int() raises
            ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: int() takes it, no header means it
            ("1_0", None),
            ("Thu, 01 Jan 99999 00:00:30 GMT", None),
        ],
    )
    def test_parse(self, header: str | None, seconds: float | None) -> None:
        assert parse_retry_after(header, now=self.NOW) == seconds


class TestScheduleSetting:
    @pytest.mark.parametrize(
        "text", ["", "a,b", "-1", "inf", "nan", ",".join(["1"] * 51), "700000"]
    )
    def test_refused(self, text: str) -> None:
        with pytest.raises(ValueError, match="must"):
            parse_retry_schedule(text)

    def test_short_schedules_for_tests(self) -> None:
        assert parse_retry_schedule("0.2, 0.5,1") == (0.2, 0.5, 1.0)
