"""When occurrences fall: cron across Europe/Berlin's DST changes, intervals, downtime."""

from datetime import UTC, datetime, timedelta

import pytest
import pytz  # type: ignore[import-untyped]

from chainflow.domain.schedules import planner
from chainflow.domain.schedules.planner import (
    MAX_MISSED_COUNTED,
    MAX_MISSED_LISTED,
    InvalidTrigger,
    Trigger,
    parse_trigger,
)

BERLIN = "Europe/Berlin"


def _cron(expr: str, tz: str = BERLIN) -> Trigger:
    return parse_trigger(cron=expr, timezone=tz, interval_s=None, at=None)


def _series(trigger: Trigger, start: datetime, count: int) -> list[str]:
    out, moment = [], start
    for _ in range(count):
        nxt = trigger.next_after(moment, anchor=start)
        assert nxt is not None
        assert nxt.tzinfo is not None
        assert nxt.utcoffset() == timedelta(0)
        out.append(nxt.strftime("%m-%d %H:%M"))
        moment = nxt
    return out


class TestDaylightSaving:
    def test_daily_in_the_skipped_hour_runs_once_an_hour_later_in_local_time(self) -> None:
        # 2026-03-29 02:00 CET → 03:00 CEST: 02:30 does not exist that day.
        got = _series(_cron("30 2 * * *"), datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
        # UTC: 01:30 (CET, 02:30 local), then 01:30 = 03:30 CEST, then 00:30 (02:30 CEST)
        assert got == ["03-28 01:30", "03-29 01:30", "03-30 00:30", "03-31 00:30"]

    def test_daily_in_the_repeated_hour_runs_once(self) -> None:
        # 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happens twice; a daily job runs once.
        got = _series(_cron("30 2 * * *"), datetime(2026, 10, 23, 12, tzinfo=UTC), 4)
        assert got == ["10-24 00:30", "10-25 00:30", "10-26 01:30", "10-27 01:30"]

    def test_hourly_runs_in_both_repeated_hours_and_never_twice_at_one_instant(self) -> None:
        got = _series(_cron("0 * * * *"), datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 4)
        assert got == ["10-25 00:00", "10-25 01:00", "10-25 02:00", "10-25 03:00"]

    def test_hourly_across_spring_forward_has_no_gap_in_utc(self) -> None:
        got = _series(_cron("0 * * * *"), datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 4)
        assert got == ["03-29 00:00", "03-29 01:00", "03-29 02:00", "03-29 03:00"]

    def test_local_wall_time_is_kept_after_the_change(self) -> None:
        trigger = _cron("0 9 * * *")
        before = trigger.next_after(datetime(2026, 3, 28, 0, tzinfo=UTC), anchor=datetime.now(UTC))
        after = trigger.next_after(datetime(2026, 3, 30, 0, tzinfo=UTC), anchor=datetime.now(UTC))
        assert before == datetime(2026, 3, 28, 8, tzinfo=UTC)  # 09:00 CET
        assert after == datetime(2026, 3, 30, 7, tzinfo=UTC)  # 09:00 CEST


class TestInterval:
    def test_occurrences_are_anchored_at_the_start(self) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        trigger = Trigger(interval_s=10)
        assert trigger.next_after(start + timedelta(seconds=25), anchor=start) == start + (
            timedelta(seconds=30)
        )
        assert trigger.first_at_or_after(start, anchor=start) == start

    def test_downtime_lists_a_bounded_number_and_counts_the_rest(self) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        trigger = Trigger(interval_s=1)
        listed, unlisted = trigger.due(start, start + timedelta(days=1), anchor=start)
        assert len(listed) == MAX_MISSED_LISTED + 1
        assert listed[-1] == start + timedelta(days=1)
        assert unlisted is not None  # an interval is always counted, in O(1)
        assert len(listed) + unlisted == 86_401

    def test_cron_downtime_is_bounded_too(self) -> None:
        trigger = _cron("* * * * *", "UTC")
        start = datetime(2026, 1, 1, tzinfo=UTC)
        listed, unlisted = trigger.due(start, start + timedelta(hours=3), anchor=start)
        assert len(listed) == MAX_MISSED_LISTED + 1
        assert listed[-1] == start + timedelta(hours=3)
        assert unlisted is not None
        assert len(listed) + unlisted == 181


class _StepCounter:
    """Counts every occurrence computed (`Trigger._next_after`), and stops a runaway at once
    instead of letting it run for the 42 minutes the audit measured."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
        self.steps, self.limit = 0, limit
        real = planner.Trigger._next_after

        def counted(trigger: Trigger, moment: datetime, *, anchor: datetime) -> datetime | None:
            self.steps += 1
            if self.steps > self.limit:
                raise AssertionError(f"more than {self.limit} steps: unbounded catch-up")
            return real(trigger, moment, anchor=anchor)

        monkeypatch.setattr(planner.Trigger, "_next_after", counted)


class TestCatchUpIsBounded:
    """A cron far behind (start_at 2000, or a week-long outage) costs a bounded number of steps,
    with the latest occurrence found exactly and the rest said to be uncounted."""

    BOUND = MAX_MISSED_LISTED + MAX_MISSED_COUNTED + 10

    @pytest.mark.parametrize(
        ("expr", "tz", "start", "now", "latest"),
        [
            (
                "* * * * *",
                "UTC",
                datetime(2000, 1, 1, tzinfo=UTC),
                datetime(2026, 12, 7, 17, 5, 30, tzinfo=UTC),
                datetime(2026, 12, 7, 17, 5, tzinfo=UTC),
            ),
            (  # a week's outage, `now` exactly on an occurrence
                "*/5 * * * *",
                BERLIN,
                datetime(2026, 3, 23, tzinfo=UTC),
                datetime(2026, 3, 30, 9, 0, tzinfo=UTC),
                datetime(2026, 3, 30, 9, 0, tzinfo=UTC),
            ),
            (  # across the spring-forward change in Berlin: 09:30 local is 07:30 UTC after it
                "30 9 * * *",
                BERLIN,
                datetime(2025, 1, 1, 8, 30, tzinfo=UTC),
                datetime(2026, 3, 30, 8, 0, tzinfo=UTC),
                datetime(2026, 3, 30, 7, 30, tzinfo=UTC),
            ),
        ],
    )
    def test_steps_are_bounded_and_the_latest_is_exact(
        self,
        monkeypatch: pytest.MonkeyPatch,
        expr: str,
        tz: str,
        start: datetime,
        now: datetime,
        latest: datetime,
    ) -> None:
        trigger = _cron(expr, tz)
        counter = _StepCounter(monkeypatch, self.BOUND)
        listed, unlisted = trigger.due(start, now, anchor=start)
        assert counter.steps <= self.BOUND
        assert unlisted is None
        assert len(listed) == MAX_MISSED_LISTED + 1
        assert listed[0] == start
        assert listed[-1] == latest
        assert listed == sorted(set(listed))

    def test_a_tail_within_the_bound_is_counted_exactly(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        trigger = _cron("* * * * *", "UTC")
        start = datetime(2026, 1, 1, tzinfo=UTC)
        total = MAX_MISSED_LISTED + MAX_MISSED_COUNTED  # occurrences from start to now
        now = start + timedelta(minutes=total - 1)
        counter = _StepCounter(monkeypatch, self.BOUND)
        listed, unlisted = trigger.due(start, now, anchor=start)
        assert counter.steps <= self.BOUND
        assert listed[-1] == now
        assert unlisted is not None
        assert len(listed) + unlisted == total

    @pytest.mark.parametrize(("total", "unlisted"), [(201, 100), (202, None)])
    def test_the_edge_of_the_count(self, total: int, unlisted: int | None) -> None:
        """201 occurrences: 101 listed and exactly 100 counted; one more is "more than"."""
        trigger = _cron("* * * * *", "UTC")
        start = datetime(2026, 1, 1, tzinfo=UTC)
        now = start + timedelta(minutes=total - 1, seconds=30)
        listed, left_out = trigger.due(start, now, anchor=start)
        assert len(listed) == MAX_MISSED_LISTED + 1
        assert listed[-1] == start + timedelta(minutes=total - 1)
        assert left_out == unlisted

    def test_when_the_jump_finds_nothing_no_count_is_claimed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        trigger = _cron("* * * * *", "UTC")
        monkeypatch.setattr(Trigger, "_latest_at_or_before", lambda *_a, **_k: None)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        listed, unlisted = trigger.due(start, start + timedelta(days=1), anchor=start)
        assert unlisted is None  # "more than", not an exact count it did not make
        assert listed[-1] == start + timedelta(minutes=MAX_MISSED_LISTED + MAX_MISSED_COUNTED + 1)


def _walked_latest(trigger: Trigger, start: datetime, now: datetime) -> datetime:
    """The last occurrence at or before `now` as the worker's forward walk reaches it."""
    latest = start
    while (nxt := trigger.next_after(latest, anchor=start)) is not None and nxt <= now:
        latest = nxt
    return latest


class TestTheJumpAcrossDaylightSaving:
    """The catch-up jump lands only on occurrences the forward walk (`next_after`) gives:
    croniter's get_prev alone gave instants the cron never fires at (review: 6-8 of 384
    samples per zone in Berlin, New York and Lord Howe)."""

    def test_the_reviewers_case(self) -> None:
        trigger = _cron("*/7 2 * * *", "America/New_York")
        start = trigger.first_at_or_after(datetime(2026, 10, 1, tzinfo=UTC), anchor=_T)
        assert start is not None
        now = datetime(2026, 11, 1, 6, 6, 30, tzinfo=UTC)  # 01:06:30 EST, after the fall-back
        listed, unlisted = trigger.due(start, now, anchor=start)
        assert unlisted is None
        assert listed[-1] == datetime(2026, 10, 31, 6, 56, tzinfo=UTC)  # 02:56 EDT
        assert listed[-1] == _walked_latest(trigger, start, now)

    @pytest.mark.parametrize(
        "tz", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Antarctica/Troll"]
    )
    def test_the_jump_matches_the_walk_next_to_every_change(self, tz: str) -> None:
        zone = pytz.timezone(tz)
        changes = [t.replace(tzinfo=UTC) for t in zone._utc_transition_times if t.year == 2026]
        assert len(changes) == 2
        checked = 0
        for expr in ("*/7 2 * * *", "30 2 * * *", "*/20 1-3 * * *", "0 * * * *"):
            trigger = _cron(expr, tz)
            for change in changes:
                for minutes in range(-150, 330, 37):
                    now = change + timedelta(minutes=minutes, seconds=30)
                    start = trigger.first_at_or_after(now - timedelta(days=2), anchor=_T)
                    assert start is not None
                    expected = _walked_latest(trigger, start, now)
                    assert trigger._latest_at_or_before(now, anchor=start) == expected, (
                        expr,
                        now,
                    )
                    checked += 1
        assert checked == 4 * 2 * 13

    def test_the_jump_next_to_a_change_is_bounded_too(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The worst case: a cron every minute, an hour after Berlin's spring-forward (the walk
        starts 6 h back: ~570 steps, docs/schedules.md)."""
        trigger = _cron("* * * * *", BERLIN)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        now = datetime(2026, 3, 29, 2, 0, 30, tzinfo=UTC)
        counter = _StepCounter(monkeypatch, 600)
        listed, unlisted = trigger.due(start, now, anchor=start)
        assert counter.steps <= 600
        assert (listed[-1], unlisted) == (datetime(2026, 3, 29, 2, 0, tzinfo=UTC), None)


_T = datetime(2026, 1, 1, tzinfo=UTC)  # an anchor: crons do not use it


class TestRefused:
    @pytest.mark.parametrize(
        ("fields", "fragment"),
        [
            ({"cron": "61 * * * *"}, "not valid"),
            ({"cron": "* * * *"}, "5 fields"),
            ({"cron": "0 0 * * * *"}, "5 fields"),
            ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
            ({"interval_s": 10, "timezone": BERLIN}, "cron trigger only"),
            ({}, "exactly one"),
            ({"cron": "* * * * *", "interval_s": 5}, "exactly one"),
        ],
    )
    def test_bad_triggers(self, fields: dict[str, object], fragment: str) -> None:
        args: dict[str, object] = {"cron": None, "timezone": None, "interval_s": None, "at": None}
        with pytest.raises(InvalidTrigger, match=fragment):
            parse_trigger(**(args | fields))  # type: ignore[arg-type]


class TestTotal:
    def test_a_cron_that_never_matches_has_no_next_occurrence(self) -> None:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        assert _cron("0 0 30 2 *").next_after(now, anchor=now) is None

    def test_past_year_9999_there_is_no_next_occurrence(self) -> None:
        end = datetime(9999, 12, 31, 23, 59, 50, tzinfo=UTC)
        assert Trigger(interval_s=60).next_after(end, anchor=end) is None
        assert _cron("* * * * *", "UTC").next_after(end, anchor=end) is None
