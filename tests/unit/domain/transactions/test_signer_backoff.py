"""A wallet whose signer signs badly is tried again after a back-off, not every round: a health
probe cannot see that fault (a local key or a moved KMS alias answers healthy), and each try
is an ERROR line and, on KMS, a billed Sign call (review)."""

import asyncio
import uuid
from types import SimpleNamespace

import pytest

from chainflow.domain.transactions import attempts
from chainflow.domain.transactions.attempts import PROBE_TASK, Signers
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.signer import SignerHealth
from tests.support.polling import eventually


async def _healthy() -> SignerHealth | None:
    return None  # no backend to probe: counts as passed


async def _passes_within(signers: Signers, wallet: uuid.UUID, timeout_s: float) -> bool:
    """Whether a probe passes within `timeout_s`: it runs as a task, polled with a deadline."""

    async def passed() -> bool:
        return signers.passed_probe(wallet, _healthy)

    try:
        await eventually(passed, timeout_s=timeout_s, interval_s=0.01, what="a probe passed")
    except AssertionError:
        return False
    return True


async def _probe_answered(wallet: uuid.UUID) -> None:
    """Until the background probe of `wallet` (a task) has answered."""
    name = f"{PROBE_TASK}:{wallet}"
    (probe,) = [task for task in asyncio.all_tasks() if task.get_name() == name]
    await asyncio.wait([probe])


async def test_bad_signatures_back_off_and_are_logged_1st_10th_100th() -> None:
    signers = Signers(MasterKey.generate())
    wallet = uuid.uuid4()
    logged = [n for n in range(1, 201) if signers.note_unavailable(wallet, bad=True)]
    assert logged == [1, 10, 100, 200]
    assert signers.is_down(wallet)
    assert not await _passes_within(signers, wallet, 0.2)  # backing off (60 s at the most now)
    assert signers.note_signed(wallet)  # it signed well: the count starts again
    assert signers.note_unavailable(wallet, bad=True)  # a 1st again: logged
    assert not await _passes_within(signers, wallet, 0.2)  # 1 s back-off


async def test_an_outage_is_retried_once_a_probe_passes_and_always_logged() -> None:
    signers = Signers(MasterKey.generate())
    wallet = uuid.uuid4()
    assert all(signers.note_unavailable(wallet) for _ in range(20))
    assert await _passes_within(signers, wallet, 5.0)


@pytest.mark.parametrize("count", [1, 2, 3])
async def test_the_back_off_doubles(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    signers = Signers(MasterKey.generate())
    wallet = uuid.uuid4()
    now = 1000.0  # the signers' clock only: the event loop's runs on
    monkeypatch.setattr(attempts, "time", SimpleNamespace(monotonic=lambda: now))
    for _ in range(count):
        signers.note_unavailable(wallet, bad=True)
    wait_s = 2.0 ** (count - 1)
    now += wait_s - 0.01
    assert not signers.passed_probe(wallet, _healthy)
    now += 0.02  # past the back-off: the probe starts (a task), and passes once it answered
    assert not signers.passed_probe(wallet, _healthy)
    await _probe_answered(wallet)
    assert signers.passed_probe(wallet, _healthy)


async def test_a_passed_probe_holds_for_each_asker_until_the_next_failure() -> None:
    # A round's placement asks first (can_sign), then its drain (probe_paused): both must see
    # the probe that passed, or the drain would start another and skip the lane every round.
    signers = Signers(MasterKey.generate())
    wallet = uuid.uuid4()
    assert signers.can_sign(wallet)
    signers.note_unavailable(wallet)
    assert not signers.can_sign(wallet)  # its probe starts
    assert await _passes_within(signers, wallet, 5.0)
    assert signers.can_sign(wallet)
    assert signers.passed_probe(wallet, _healthy)
    signers.note_unavailable(wallet)  # down again: a new probe must pass
    assert not signers.can_sign(wallet)
