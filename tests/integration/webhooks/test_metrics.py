"""Webhook and outbox metrics move as deliveries happen (issue 18): a real receiver on
127.0.0.1 that fails, then accepts; one that fails until the schedule is spent; counted once
their outcome is committed. On both databases (the registry is this process's)."""

import uuid

from prometheus_client import REGISTRY

from chainflow.domain.webhooks.models import DeliveryStatus
from tests.integration.webhooks.conftest import Deliveries, tx_events
from tests.support.polling import eventually
from tests.support.receiver import Received, always, receiver


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


NAMES: tuple[tuple[str, dict[str, str]], ...] = (
    ("chainflow_webhook_deliveries_total", {"outcome": "delivered"}),
    ("chainflow_webhook_deliveries_total", {"outcome": "retry"}),
    ("chainflow_webhook_deliveries_total", {"outcome": "gave_up"}),
    ("chainflow_webhook_attempt_errors_total", {"error": "non_2xx"}),
    ("chainflow_webhook_attempt_seconds_count", {}),
    ("chainflow_webhook_delivery_lag_seconds_count", {}),
    ("chainflow_outbox_lag_seconds_count", {}),
    ("chainflow_webhook_delivery_lag_seconds_sum", {}),
)


def snapshot() -> dict[str, float]:
    return {f"{name}{sorted(labels.items())}": value(name, **labels) for name, labels in NAMES}


class TestDeliveryMetrics:
    async def test_outcomes_attempts_and_lags_are_counted_once_each(
        self, deliveries: Deliveries
    ) -> None:
        def twice_500(_request: Received, seen: int) -> tuple[int, dict[str, str]]:
            return (500, {}) if seen < 2 else (200, {})

        before = snapshot()
        async with receiver(twice_500) as flaky, receiver(always(503)) as down:
            await deliveries.endpoint(flaky.url, events=["transaction.*"])
            await deliveries.endpoint(down.url, events=["doomed.*"])
            tx = uuid.uuid4()
            await deliveries.emit(*tx_events(["queued", "signed", "confirmed"]), tx_id=tx)
            await deliveries.emit(("doomed.event", {}))
            async with deliveries.running():

                async def finished() -> bool:
                    rows = await deliveries.deliveries()
                    return len(rows) == 4 and all(
                        row.status is not DeliveryStatus.PENDING for row in rows
                    )

                await eventually(finished, timeout_s=60)
        after = snapshot()
        moved = {key: after[key] - before[key] for key in after}
        lag_sum = moved.pop("chainflow_webhook_delivery_lag_seconds_sum[]")
        schedule = len(deliveries.config.retry_schedule)
        assert moved == {
            "chainflow_webhook_deliveries_total[('outcome', 'delivered')]": 3,
            # 3 events x 2 failures, and the doomed one's attempts before the last
            "chainflow_webhook_deliveries_total[('outcome', 'retry')]": 6 + schedule,
            "chainflow_webhook_deliveries_total[('outcome', 'gave_up')]": 1,
            "chainflow_webhook_attempt_errors_total[('error', 'non_2xx')]": 6 + schedule + 1,
            "chainflow_webhook_attempt_seconds_count[]": 9 + schedule + 1,
            "chainflow_webhook_delivery_lag_seconds_count[]": 3,
            "chainflow_outbox_lag_seconds_count[]": 4,
        }
        # Each delivered event waited at least its two retries (0.2 s each) since its change.
        assert lag_sum >= 3 * 0.4
