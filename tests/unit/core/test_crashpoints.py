"""Crash points: parsing of the test setting, and a real SIGKILL at the chosen arrival."""

import signal
import subprocess
import sys

import pytest

from chainflow.core.crashpoints import POINTS, Crasher, CrashPoint, parse_crash_at
from chainflow.core.errors import ConfigError
from chainflow.core.settings import load_settings


def test_points_are_the_pipeline_and_rotation_steps() -> None:
    assert {
        "nonce_taken",
        "attempt_stored",
        "node_accepted",
        "bump_stored",
        "reorg_recording",
        "schedule_runs_stored",
        "rotation_locked",
        "key_file_written",
        "key_file_installed",
        "rotation_batch_rewrapped",
        "rotation_batch_committed",
    } == POINTS


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("attempt_stored", ("attempt_stored", 1)), ("node_accepted:3", ("node_accepted", 3))],
)
def test_parse(spec: str, expected: tuple[str, int]) -> None:
    assert parse_crash_at(spec) == expected


# "²": isdigit() True, and int() raised its own message; "٣": int() read it as 3.
@pytest.mark.parametrize(
    "spec",
    [
        "after_everything",
        "attempt_stored:0",
        "attempt_stored:x",
        "attempt_stored:\u00b2",
        "attempt_stored:\u0663",
    ],
)
def test_parse_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"crash point|count"):
        parse_crash_at(spec)


def test_a_bad_setting_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINFLOW_TEST_CRASH_AT", "nowhere")
    with pytest.raises(ConfigError, match="CHAINFLOW_TEST_CRASH_AT"):
        load_settings()


def test_off_by_default_and_other_points_pass() -> None:
    Crasher.from_spec(None).reached(CrashPoint.ATTEMPT_STORED)
    Crasher.from_spec("node_accepted").reached(CrashPoint.ATTEMPT_STORED)


def test_kills_the_process_at_the_nth_arrival() -> None:
    script = (
        "from chainflow.core.crashpoints import Crasher\n"
        "c = Crasher.from_spec('bump_stored:2')\n"
        "c.reached('bump_stored'); print('first', flush=True)\n"
        "c.reached('bump_stored'); print('second', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.decode().split() == ["first"]
    assert b"crash point bump_stored reached" in done.stderr
