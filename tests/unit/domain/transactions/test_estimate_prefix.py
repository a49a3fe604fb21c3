"""The estimate's prefix of a lane (drain/estimate.cut_prefix) and the test of a lane with a
nonce taken and not mined (drain/plan.has_unmined): a revert, or an explicit gas_limit below
the estimate, fails a request only when nothing of its lane is ahead of it unmined."""

import uuid
from typing import Any

import pytest

from chainflow.core.types import TxId, WalletId, Wei
from chainflow.domain.transactions.drain.estimate import Estimate, Refused, cut_prefix
from chainflow.domain.transactions.drain.plan import Counts, has_unmined
from chainflow.domain.transactions.rows import Queued
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.rpc.client import RpcCallError

WALLET = WalletId(uuid.uuid4())
OK = hex(50_000)
REVERT = RpcCallError(rpc_code=3, message="execution reverted: nope")
NO_FUNDS = RpcCallError(rpc_code=-32000, message="insufficient funds for gas * price + value")


def queued(gas_limit: int | None = None) -> Queued:
    return Queued(
        id=TxId(uuid.uuid4()),
        wallet_id=WALLET,
        status=TxStatus.QUEUED,
        from_address="0x" + "11" * 20,
        to_address="0x" + "22" * 20,
        value_wei=Wei(0),
        data=b"",
        gas_limit=gas_limit,
        max_fee_per_gas_cap=None,
        max_priority_fee_per_gas_cap=None,
        valid_until=None,
    )


def cut(
    answers: list[Any], *, unmined_ahead: bool, gas_limits: list[int | None] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The prefix and the refused requests, each request named by its index ("0", "1", …)."""
    rows = [queued(limit) for limit in gas_limits or [None] * len(answers)]
    names = {tx.id: str(i) for i, tx in enumerate(rows)}
    refused: Refused = {}
    ready = cut_prefix(rows, answers, refused, buffer_percent=20, unmined_ahead=unmined_ahead)
    return [names[e.tx_id] for e in ready], {names[t]: code for t, (code, _) in refused.items()}


class TestCutPrefix:
    @pytest.mark.parametrize(
        ("answers", "unmined_ahead", "ready", "refused"),
        [
            # nothing ahead unmined: a revert fails and the prefix goes on, as always
            ([REVERT, OK], False, ["1"], {"0": "estimate_reverted"}),
            (
                [REVERT, REVERT, OK],
                False,
                ["2"],
                {"0": "estimate_reverted", "1": "estimate_reverted"},
            ),
            # a nonce of the lane taken and not mined: the revert waits, nothing overtakes it
            ([REVERT, OK], True, [], {}),
            ([OK, REVERT, OK], True, ["0"], {}),
            # an earlier request of this prefix is ahead of it: it waits as well
            ([OK, REVERT, OK], False, ["0"], {}),
            # no funds or a node error ends the prefix either way
            ([NO_FUNDS, OK], False, [], {}),
            ([OK, NO_FUNDS, OK], True, ["0"], {}),
            ([OK, OK], True, ["0", "1"], {}),
        ],
    )
    def test_a_revert_fails_only_with_nothing_unmined_ahead(
        self,
        answers: list[Any],
        unmined_ahead: bool,
        ready: list[str],
        refused: dict[str, str],
    ) -> None:
        assert cut(answers, unmined_ahead=unmined_ahead) == (ready, refused)

    @pytest.mark.parametrize(
        ("unmined_ahead", "gas_limits", "ready", "refused"),
        [
            (False, [40_000, None], ["1"], {"0": "gas_limit_too_low"}),
            (True, [40_000, None], [], {}),
            (False, [None, 40_000, None], ["0"], {}),
            (True, [50_000, None], ["0", "1"], {}),
        ],
    )
    def test_an_explicit_gas_limit_below_the_estimate_is_judged_the_same(
        self,
        unmined_ahead: bool,
        gas_limits: list[int | None],
        ready: list[str],
        refused: dict[str, str],
    ) -> None:
        answers = [OK] * len(gas_limits)
        assert cut(answers, unmined_ahead=unmined_ahead, gas_limits=gas_limits) == (
            ready,
            refused,
        )

    def test_the_gas_limit_is_the_buffered_estimate_or_the_explicit_one(self) -> None:
        rows = [queued(), queued(60_000)]
        ready = cut_prefix(rows, [OK, OK], {}, buffer_percent=20, unmined_ahead=True)
        assert ready == [Estimate(rows[0].id, 60_000), Estimate(rows[1].id, 60_000)]

    def test_a_refused_request_keeps_the_revert_reason(self) -> None:
        refused: Refused = {}
        [tx] = rows = [queued()]
        cut_prefix(rows, [REVERT], refused, buffer_percent=20, unmined_ahead=False)
        code, message = refused[tx.id]
        assert code == "estimate_reverted"
        assert "nope" in message


class TestHasUnmined:
    @pytest.mark.parametrize(
        ("next_nonce", "mined", "pending", "expected"),
        [
            (0, 0, 0, False),  # a new lane
            (3, 3, 3, False),  # everything signed is mined
            (5, 7, 7, False),  # the key used outside, all mined: the lane is behind
            (3, 2, 3, True),  # ours sent, not mined
            (3, 2, 2, True),  # ours signed, not at the node (a crash before the send)
            (3, 3, 5, True),  # foreign nonces in the pool beyond ours
        ],
    )
    def test_a_nonce_taken_or_pooled_and_not_mined(
        self, next_nonce: int, mined: int, pending: int, expected: bool
    ) -> None:
        assert has_unmined(next_nonce, Counts(mined=mined, pending=pending)) is expected
