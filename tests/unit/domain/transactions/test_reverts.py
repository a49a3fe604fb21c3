"""What a call tracer's top call says about a reverted transaction (track/reverts.py)."""

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from chainflow.domain.transactions.track.reverts import reason_from_trace

ERROR = "0x" + (keccak(text="Error(string)")[:4] + encode(["string"], ["Pool: K"])).hex()
PANIC = "0x" + (keccak(text="Panic(uint256)")[:4] + encode(["uint256"], [0x11])).hex()
CUSTOM = "0x" + (keccak(text="TooLate(uint256)")[:4] + encode(["uint256"], [7])).hex()


@pytest.mark.parametrize(
    ("trace", "reason"),
    [
        ({"error": "execution reverted", "output": ERROR}, "Pool: K"),
        ({"error": "execution reverted", "output": PANIC}, "panic 0x11"),
        ({"error": "out of gas"}, "out of gas"),  # research/dca-uniswap.md pitfall 1
        ({"error": "execution reverted", "output": "0x"}, "execution reverted"),  # revert(0, 0)
        ({"error": "execution reverted"}, "execution reverted"),
        ({"output": "0x"}, None),  # not a failure at all
    ],
    ids=["error-string", "panic", "out-of-gas", "bare-revert", "no-output", "none"],
)
def test_the_reason_of_a_trace(trace: dict[str, str], reason: str | None) -> None:
    assert reason_from_trace(trace) == reason


def test_a_custom_error_keeps_its_selector_and_a_little_data() -> None:
    reason = reason_from_trace({"error": "execution reverted", "output": CUSTOM})
    assert reason == f"execution reverted with custom error data {CUSTOM[:74]}"
