"""Delivery to a real receiver on 127.0.0.1, on both databases: signatures, per-transaction
order, retries (500s, 429 with Retry-After, a receiver that is down), secret rotation, leases
of a dead worker, and disabling an endpoint that fails everything."""

import base64
import itertools
import time
import uuid
from datetime import datetime, timedelta

import pytest
import structlog
from sqlalchemy import update

from chainflow.core.clock import utcnow
from chainflow.core.settings import Settings
from chainflow.domain.events import sequence_pending
from chainflow.domain.webhooks import attempts as webhook_attempts
from chainflow.domain.webhooks import delivery, service
from chainflow.domain.webhooks.delivery import Job, claim, fan_out, given_back, prune, record
from chainflow.domain.webhooks.models import DeliveryStatus, WebhookEndpoint
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.webhooks import new_webhook_http
from tests.integration.webhooks.conftest import Deliveries, tx_events
from tests.support.polling import eventually
from tests.support.receiver import Received, Receiver, always, receiver


def by_tx(received: list[Received]) -> dict[str, list[str]]:
    """Accepted event types per transaction, in arrival order."""
    order: dict[str, list[str]] = {}
    for r in received:
        envelope = r.envelope
        tx = envelope["data"].get("tx")
        if tx is not None:
            order.setdefault(tx, []).append(envelope["type"])
    return order


STATUSES = ["queued", "signed", "submitted", "mined", "confirmed"]


def lifecycle(tx: str) -> list[tuple[str, dict[str, object]]]:
    return [(kind, {**data, "tx": tx}) for kind, data in tx_events(STATUSES)]


class TestDelivery:
    async def test_every_event_signed_once_and_in_order_per_transaction(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            _, secret = await deliveries.endpoint(hook.url, events=["transaction.*"])
            expected: dict[str, list[str]] = {}
            async with deliveries.running():
                for _ in range(6):
                    tx = uuid.uuid4()
                    await deliveries.emit(*lifecycle(str(tx)), tx_id=tx)
                    expected[str(tx)] = [f"transaction.{s}" for s in STATUSES]
                await deliveries.emit(("wallet.low_balance", {"balance_wei": "1"}))
                await eventually(lambda: _count(hook, 30), timeout_s=30)
            assert by_tx(hook.accepted()) == expected
            assert all(r.verifies_with(secret) for r in hook.received)
            assert all(r.msg_id == r.envelope["id"] for r in hook.received)
            assert len({r.msg_id for r in hook.received}) == 30  # no wallet.low_balance
            assert not any(
                r.verifies_with(secret.replace("whsec_", "whsec_A")) for r in hook.received[:1]
            )
            assert all(
                "query-secret" not in r.headers.get("webhook-signature", "") for r in hook.received
            )

    async def test_credentials_in_the_url_go_to_the_receiver(self, deliveries: Deliveries) -> None:
        """The API shows such a URL masked (test_webhooks_api.py); deliveries use it in full:
        HTTP Basic authentication with its user and password."""
        async with receiver() as hook:
            url = hook.url.replace("http://", "http://hook-user:hook-pass@", 1)
            await deliveries.endpoint(url)
            async with deliveries.running():
                await deliveries.emit(("wallet.low_balance", {"balance_wei": "1"}))
                await eventually(lambda: _count(hook, 1), timeout_s=30)
        basic = base64.b64encode(b"hook-user:hook-pass").decode()
        assert hook.received[0].headers["authorization"] == f"Basic {basic}"

    async def test_500_three_times_then_200_keeps_the_webhook_id_and_the_order(
        self, deliveries: Deliveries
    ) -> None:
        def flaky(_request: Received, seen: int) -> tuple[int, dict[str, str]]:
            return (500, {}) if seen < 3 else (200, {})

        async with receiver(flaky) as hook:
            await deliveries.endpoint(hook.url, events=["transaction.*"])
            tx = uuid.uuid4()
            ids = await deliveries.emit(*lifecycle(str(tx)), tx_id=tx)
            async with deliveries.running():
                await eventually(lambda: _count(hook, 5), timeout_s=60)
            assert [r.msg_id for r in hook.accepted()] == ids
            assert all(hook.seen(msg_id) == 4 for msg_id in ids)
            # no event was tried before the one ahead of it in its transaction was accepted
            first_try = {
                msg_id: min(i for i, r in enumerate(hook.received) if r.msg_id == msg_id)
                for msg_id in ids
            }
            accepted_at = {r.msg_id: hook.received.index(r) for r in hook.accepted()}
            for earlier, later in itertools.pairwise(ids):
                assert accepted_at[earlier] < first_try[later]
        rows = await deliveries.deliveries()
        assert {(d.status, d.attempt_count) for d in rows} == {(DeliveryStatus.SUCCEEDED, 4)}
        attempts = await deliveries.attempts()
        assert sorted(a.status_code or 0 for a in attempts).count(500) == 15
        assert {a.error for a in attempts if a.status_code == 500} == {"non_2xx"}

    async def test_429_waits_for_retry_after(self, deliveries: Deliveries) -> None:
        def limited(_request: Received, seen: int) -> tuple[int, dict[str, str]]:
            return (429, {"Retry-After": "2"}) if seen == 0 else (200, {})

        async with receiver(limited) as hook:
            await deliveries.endpoint(hook.url)
            [msg_id] = await deliveries.emit(("transaction.confirmed", {"tx": "a"}))
            async with deliveries.running():
                await eventually(lambda: _count(hook, 1), timeout_s=30)
            first, second = hook.received
            assert first.msg_id == second.msg_id == msg_id
            assert second.at - first.at >= 1.9  # the schedule alone says 0.2 s

    async def test_a_receiver_down_then_back_gets_every_event(self, deliveries: Deliveries) -> None:
        hook = Receiver()
        hook.bind()  # its port, not listening yet: connections are refused
        await deliveries.endpoint(hook.url)
        ids = await deliveries.emit(*lifecycle("down"))
        async with deliveries.running(retry_schedule=(0.2,) * 30):

            async def refused() -> bool:
                return sum(a.error == "connect" for a in await deliveries.attempts()) >= 5

            await eventually(refused, timeout_s=30)
            await hook.start()
            try:
                await eventually(lambda: _count(hook, 5), timeout_s=30)
            finally:
                await hook.stop()
        assert sorted(r.msg_id for r in hook.accepted()) == sorted(ids)

    async def test_during_the_overlap_either_secret_verifies(self, deliveries: Deliveries) -> None:
        async with receiver() as hook:
            endpoint, old = await deliveries.endpoint(hook.url)
            policy = service.SecretPolicy(master=deliveries.master, overlap_s=3600)
            async with unit_of_work(deliveries.sessionmaker) as session:
                row = await service.get_endpoint(session, endpoint.id, for_update=True)
                new = await service.rotate_secret(session, row, policy=policy)
            assert new != old
            await deliveries.emit(("transaction.confirmed", {"tx": "b"}))
            async with deliveries.running():
                await eventually(lambda: _count(hook, 1), timeout_s=30)
                [during] = hook.received
                assert during.verifies_with(old)
                assert during.verifies_with(new)
                assert len(during.headers["webhook-signature"].split(" ")) == 2
                async with unit_of_work(deliveries.sessionmaker) as session:
                    await session.execute(
                        update(WebhookEndpoint).values(
                            previous_secret_expires_at=utcnow() - timedelta(seconds=1)
                        )
                    )
                await deliveries.emit(("transaction.confirmed", {"tx": "c"}))
                await eventually(lambda: _count(hook, 2), timeout_s=30)
            after = hook.received[1]
            assert after.verifies_with(new)
            assert not after.verifies_with(old)

    async def test_a_dead_workers_claims_are_sent_after_their_lease(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            await deliveries.endpoint(hook.url)
            tx = uuid.uuid4()
            ids = await deliveries.emit(*lifecycle(str(tx)), tx_id=tx)
            async with unit_of_work(deliveries.sessionmaker) as session:
                await sequence_pending(session)
            async with unit_of_work(deliveries.sessionmaker) as session:
                assert await fan_out(session, now=utcnow()) == 5
            # a worker claims the first of the transaction (the others wait on it) and dies
            async with unit_of_work(deliveries.sessionmaker) as session:
                jobs = await claim(session, deliveries.config, now=utcnow(), limit=50)
            claimed_at = time.monotonic()
            assert [j.msg_id for j in jobs] == ids[:1]
            async with deliveries.running():
                await eventually(lambda: _count(hook, 5), timeout_s=30)
            assert [r.msg_id for r in hook.accepted()] == ids
            assert hook.received[0].at - claimed_at >= deliveries.config.lease_s - 0.5

    async def test_an_endpoint_failing_everything_is_disabled(self, deliveries: Deliveries) -> None:
        async with receiver(always(503)) as hook:
            endpoint, _ = await deliveries.endpoint(hook.url)
            await deliveries.emit(("transaction.failed", {"tx": "d"}))
            async with deliveries.running(disable_after_s=0.5, retry_schedule=(0.2,) * 30):

                async def disabled() -> bool:
                    async with unit_of_work(deliveries.sessionmaker) as session:
                        row = await service.get_endpoint(session, endpoint.id)
                        return not row.enabled

                await eventually(disabled, timeout_s=30)
            events = [e.type for e in await deliveries.events()]
            assert "webhook.endpoint.disabled" in events
            async with unit_of_work(deliveries.sessionmaker) as session:
                row = await service.get_endpoint(session, endpoint.id)
                assert row.disabled_reason
                assert row.disabled_reason.startswith("every delivery failed")


class TestConnectTimeGuard:
    async def test_a_stored_private_url_is_refused_without_a_connection(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            await deliveries.endpoint(hook.url)  # stored as if it had passed the API's check
            await deliveries.emit(("transaction.confirmed", {"tx": "e"}))
            async with deliveries.running(allow_private=False):

                async def refused() -> bool:
                    return any(a.error == "address_forbidden" for a in await deliveries.attempts())

                await eventually(refused, timeout_s=30)
            assert hook.received == []

    async def test_a_redirect_is_not_followed(self, deliveries: Deliveries) -> None:
        async with receiver() as target:
            moved = always(302, {"Location": target.url})
            async with receiver(moved) as hook:
                await deliveries.endpoint(hook.url)
                await deliveries.emit(("transaction.confirmed", {"tx": "f"}))
                async with deliveries.running():

                    async def redirected() -> bool:
                        errors = [a.error for a in await deliveries.attempts()]
                        return errors.count("redirect_not_followed") >= 2

                    await eventually(redirected, timeout_s=30)
            assert hook.received
            assert target.received == []


async def _count(hook: Receiver, n: int) -> bool:
    return len({r.msg_id for r in hook.accepted()}) >= n


class TestRetention:
    async def test_finished_deliveries_are_pruned_pending_ones_kept(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            await deliveries.endpoint(hook.url)
            await deliveries.emit(("transaction.confirmed", {"tx": "g"}))
            async with deliveries.running():
                await eventually(lambda: _count(hook, 1), timeout_s=30)
        await deliveries.emit(("transaction.confirmed", {"tx": "h"}))
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)
        async with unit_of_work(deliveries.sessionmaker) as session:
            assert await fan_out(session, now=utcnow()) == 1
        async with unit_of_work(deliveries.sessionmaker) as session:
            pruned = await prune(session, before=utcnow() + timedelta(seconds=1), limit=100)
        assert pruned == 1
        assert [d.status for d in await deliveries.deliveries()] == [DeliveryStatus.PENDING]
        assert await deliveries.attempts() == []


class TestConcurrency:
    async def test_a_slow_receiver_does_not_stall_the_others(self, deliveries: Deliveries) -> None:
        async with receiver() as slow, receiver() as fast:
            slow.delay_s = 3.0  # each of its answers takes 3 s (the timeout is 3 s too)
            await deliveries.endpoint(slow.url, events=["slow.*"])
            await deliveries.endpoint(fast.url, events=["fast.*"])
            await deliveries.emit(*[(f"slow.e{i}", {}) for i in range(12)])
            async with deliveries.running(concurrency=4):

                async def slow_busy() -> bool:
                    return len(slow.received) >= 2

                await eventually(slow_busy, timeout_s=30)
                await deliveries.emit(*[(f"fast.e{i}", {}) for i in range(6)])
                started = time.monotonic()
                await eventually(lambda: _count(fast, 6), timeout_s=30)
                took = time.monotonic() - started
            assert took < 2.5  # not behind 12 slow deliveries on 4 slots (9 s and more)
            assert len(slow.received) <= 6  # it never held more than half the slots


class TestBatches:
    async def test_jobs_queued_behind_their_endpoints_sends_get_longer_leases(
        self, deliveries: Deliveries
    ) -> None:
        await deliveries.endpoint("http://127.0.0.1:9/hook")
        await deliveries.emit(*[(f"transaction.e{i}", {}) for i in range(10)])
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)
        now = utcnow()
        async with unit_of_work(deliveries.sessionmaker) as session:
            assert await fan_out(session, now=now) == 10
            jobs = await claim(session, deliveries.config, now=now, limit=10, sends_per_endpoint=4)
        config = deliveries.config
        waits = [(j.lease_until - now).total_seconds() - config.lease_s for j in jobs]
        timeout = config.timeout_s
        assert waits == pytest.approx([0] * 4 + [timeout] * 4 + [2 * timeout] * 2)
        leased = {d.id: d.leased_until for d in await deliveries.deliveries()}
        assert all(leased[j.delivery_id] == j.lease_until for j in jobs)

    async def test_a_job_sent_after_waiting_is_signed_when_sent(
        self, deliveries: Deliveries
    ) -> None:
        """A job may wait for its endpoint's slot for rounds of sends (up to 7 timeouts,
        CHAINFLOW_WEBHOOK_TIMEOUT_S up to 60 s): its webhook-timestamp is its send's, or the
        receiver's verifier refuses it as more than 5 minutes old (the audit's reproduction:
        the 7th of 8 jobs behind a 50 s receiver arrived 301 s after it was signed)."""
        async with receiver() as hook:
            _, secret = await deliveries.endpoint(hook.url)
            await deliveries.emit(("transaction.confirmed", {}))
            async with unit_of_work(deliveries.sessionmaker) as session:
                await sequence_pending(session)
            claimed_at = utcnow() - timedelta(minutes=7)
            async with unit_of_work(deliveries.sessionmaker) as session:
                await fan_out(session, now=claimed_at)
                [job] = await claim(session, deliveries.config, now=claimed_at, limit=10)
            http = new_webhook_http(Settings(webhook_allow_private_urls=True))
            try:
                sent_at = utcnow()
                outcome = await webhook_attempts.send(http, job, timeout_s=10, now=sent_at)
            finally:
                await http.close()
        assert outcome.is_success
        [received] = hook.received
        assert received.headers["webhook-timestamp"] == str(int(sent_at.timestamp()))
        assert received.verifies_with(secret)

    async def test_a_job_given_back_unsent_is_due_again_with_no_attempt(
        self, deliveries: Deliveries
    ) -> None:
        now, job = await _one_claimed(deliveries)
        late = job.lease_until - timedelta(seconds=deliveries.config.timeout_s)
        assert not deliveries.config.may_start(job.lease_until, now=late)
        assert deliveries.config.may_start(job.lease_until, now=now)
        async with unit_of_work(deliveries.sessionmaker) as session:
            await record(session, [given_back(job, now=late)], deliveries.config, now=late)
        [row] = await deliveries.deliveries()
        assert (row.status, row.attempt_count, row.leased_until) == (
            DeliveryStatus.PENDING,
            0,
            None,
        )
        assert row.next_attempt_at == late
        assert await deliveries.attempts() == []

    async def test_a_burst_to_one_endpoint_goes_over_kept_alive_connections(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            await deliveries.endpoint(hook.url)
            await deliveries.emit(*[(f"transaction.e{i}", {}) for i in range(60)])
            async with deliveries.running(concurrency=8):
                await eventually(lambda: _count(hook, 60), timeout_s=30)
            peers = {r.peer for r in hook.received}
            assert len(hook.received) == 60
            assert len(peers) <= 4  # its 4 sending slots' connections, each reused


class TestFanOut:
    async def test_each_event_once_per_matching_endpoint_from_its_creation(
        self, deliveries: Deliveries
    ) -> None:
        wallet, other = uuid.uuid4(), uuid.uuid4()
        early = await deliveries.emit(("transaction.queued", {}), wallet_id=wallet, chain_id=1)
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)  # an endpoint starts at the sequenced head
        everything, _ = await deliveries.endpoint("http://127.0.0.1:9/all")
        mine, _ = await deliveries.endpoint(
            "http://127.0.0.1:9/mine", wallet_ids=[str(wallet)], chain_ids=[1]
        )

        async def fan() -> int:
            async with unit_of_work(deliveries.sessionmaker) as session:
                await sequence_pending(session)
            async with unit_of_work(deliveries.sessionmaker) as session:
                return await fan_out(session, now=utcnow())

        assert await fan() == 0  # the event before the endpoints is not theirs (replay is)
        ids = await deliveries.emit(("transaction.signed", {}), wallet_id=wallet, chain_id=1)
        ids += await deliveries.emit(("transaction.signed", {}), wallet_id=other, chain_id=1)
        ids += await deliveries.emit(("transaction.signed", {}), wallet_id=wallet, chain_id=137)
        ids += await deliveries.emit(("webhook.test", {}))  # sent to its own endpoint only
        assert await fan() == 4
        assert await fan() == 0
        got = {(d.endpoint_id, f"evt_{d.event_id.hex}") for d in await deliveries.deliveries()}
        assert got == {
            *((everything.id, i) for i in ids[:3]),
            (mine.id, ids[0]),
        }
        assert early[0] not in {e for _, e in got}


class TestOutcomesCommitOnTheirOwn:
    async def test_a_failing_fan_out_does_not_undo_a_recorded_delivery(
        self, deliveries: Deliveries, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A fan-out that keeps failing (here: after its first turn) must not roll back the
        outcomes of sends that finished: the delivery stays succeeded, not pending and sent
        again after its lease."""
        real, turns = delivery.fan_out, itertools.count()

        async def failing_after_one(*args: object, **kwargs: object) -> int:
            if next(turns) > 0 and hook.received:
                raise RuntimeError("fan-out keeps failing")
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        async with receiver() as hook:
            await deliveries.endpoint(hook.url)
            await deliveries.emit(("transaction.confirmed", {}))
            monkeypatch.setattr(delivery, "fan_out", failing_after_one)
            async with deliveries.running():
                await eventually(lambda: _count(hook, 1), timeout_s=10)

                async def succeeded() -> bool:
                    rows = await deliveries.deliveries()
                    return [r.status for r in rows] == [DeliveryStatus.SUCCEEDED]

                await eventually(succeeded, timeout_s=10)


async def _one_claimed(deliveries: Deliveries) -> tuple[datetime, Job]:
    """One `transaction.confirmed` event to an endpoint no one listens on, fanned out and
    claimed now: (now, its job)."""
    await deliveries.endpoint("http://127.0.0.1:9/hook")
    await deliveries.emit(("transaction.confirmed", {}))
    async with unit_of_work(deliveries.sessionmaker) as session:
        await sequence_pending(session)
    now = utcnow()
    async with unit_of_work(deliveries.sessionmaker) as session:
        await fan_out(session, now=now)
        [job] = await claim(session, deliveries.config, now=now, limit=10)
    return now, job


class TestGivenBackAfterAnotherClaim:
    async def test_a_job_given_back_late_leaves_the_new_lease_alone(
        self, deliveries: Deliveries
    ) -> None:
        """Worker A's job waited past its lease; worker B claimed the delivery again. A's
        give-back must not release B's lease (a third worker would send it beside B)."""
        _, first = await _one_claimed(deliveries)
        later = first.lease_until + timedelta(seconds=1)
        async with unit_of_work(deliveries.sessionmaker) as session:
            [second] = await claim(session, deliveries.config, now=later, limit=10)
        assert second.delivery_id == first.delivery_id
        async with unit_of_work(deliveries.sessionmaker) as session:
            await record(session, [given_back(first, now=later)], deliveries.config, now=later)
        [row] = await deliveries.deliveries()
        assert row.leased_until == second.lease_until
        async with unit_of_work(deliveries.sessionmaker) as session:
            assert await claim(session, deliveries.config, now=later, limit=10) == []


# "²" (U+00B2): str.isdigit() says True, int() raises ValueError (the audit's reproduction).
SUPERSCRIPT_TWO = "\u00b2"


class TestUnreadableAnswers:
    async def test_a_200_with_an_unreadable_retry_after_is_delivered_once(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver(always(200, {"Retry-After": SUPERSCRIPT_TWO})) as hook:
            await deliveries.endpoint(hook.url)
            [msg_id] = await deliveries.emit(("transaction.confirmed", {"tx": "a"}))
            async with deliveries.running():

                async def succeeded() -> bool:
                    rows = await deliveries.deliveries()
                    return [(r.status, r.attempt_count) for r in rows] == [
                        (DeliveryStatus.SUCCEEDED, 1)
                    ]

                await eventually(succeeded, timeout_s=10)
            assert [r.msg_id for r in hook.received] == [msg_id]
        assert [(a.status_code, a.error) for a in await deliveries.attempts()] == [(200, None)]

    async def test_a_failure_with_an_unreadable_retry_after_follows_the_schedule(
        self, deliveries: Deliveries
    ) -> None:
        """The header is ignored (RFC 9110 §5.5): each attempt is counted and retried on the
        schedule until the delivery fails for good."""
        async with receiver(always(503, {"Retry-After": SUPERSCRIPT_TWO})) as hook:
            await deliveries.endpoint(hook.url)
            await deliveries.emit(("transaction.failed", {"tx": "b"}))
            async with deliveries.running():

                async def failed() -> bool:
                    rows = await deliveries.deliveries()
                    return [r.status for r in rows] == [DeliveryStatus.FAILED]

                await eventually(failed, timeout_s=20)
            [row] = await deliveries.deliveries()
            assert (
                row.attempt_count == len(hook.received) == len(deliveries.config.retry_schedule) + 1
            )
        assert {(a.status_code, a.error) for a in await deliveries.attempts()} == {(503, "non_2xx")}

    async def test_an_answer_that_breaks_its_reading_is_a_counted_failure(
        self, deliveries: Deliveries, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Whatever goes wrong reading an answer is that attempt's failure, so the endpoint is
        still disabled after `disable_after_s` of failing everything (a 2xx answer's
        Retry-After is never read: it is a delivery)."""

        def broken(_value: str | None, **_now: datetime) -> float | None:
            raise RuntimeError("a reading this code did not expect")

        monkeypatch.setattr(webhook_attempts, "parse_retry_after", broken)
        async with receiver(always(503)) as hook:
            endpoint, _ = await deliveries.endpoint(hook.url)
            await deliveries.emit(("transaction.failed", {"tx": "c"}))
            with structlog.testing.capture_logs() as logs:
                async with deliveries.running(disable_after_s=0.5, retry_schedule=(0.2,) * 30):

                    async def disabled() -> bool:
                        async with unit_of_work(deliveries.sessionmaker) as session:
                            return not (await service.get_endpoint(session, endpoint.id)).enabled

                    await eventually(disabled, timeout_s=20)
        found = await deliveries.attempts()
        assert len(found) >= 2
        assert {(a.status_code, a.error) for a in found} == {(503, "client_error")}
        warned = [e for e in logs if e["event"] == "webhook.client_error"]
        assert warned
        assert {e["error_type"] for e in warned} == {"RuntimeError"}
        assert all("query-secret" not in str(e) for e in logs)

    async def test_a_send_that_raises_is_recorded_and_logged(
        self, deliveries: Deliveries, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def raising(*_args: object, **_kwargs: object) -> delivery.Outcome:
            raise RuntimeError("https://user:pass@example.com/secret")

        monkeypatch.setattr(delivery, "send", raising)
        async with receiver(always(200)) as hook:
            await deliveries.endpoint(hook.url)
            await deliveries.emit(("transaction.failed", {"tx": "d"}))
            with structlog.testing.capture_logs() as logs:
                async with deliveries.running():

                    async def failed() -> bool:
                        rows = await deliveries.deliveries()
                        return [r.status for r in rows] == [DeliveryStatus.FAILED]

                    await eventually(failed, timeout_s=20)
            assert hook.received == []
        [row] = await deliveries.deliveries()
        assert row.attempt_count == len(deliveries.config.retry_schedule) + 1
        assert {a.error for a in await deliveries.attempts()} == {"client_error"}
        logged = [e for e in logs if e["event"] == "webhook.send_failed"]
        assert len(logged) == row.attempt_count
        assert {e["error_type"] for e in logged} == {"RuntimeError"}
        assert all("pass@" not in str(e) for e in logs)
