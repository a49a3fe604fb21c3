"""Error classification against the node strings collected in research/txm-reliability.md §3."""

import pytest
from eth_abi.abi import encode

from chainflow.infra.rpc.errors import (
    RpcErrorKind,
    RpcFailure,
    classify,
    is_retryable,
    revert_reason,
)

K = RpcErrorKind
CASES: list[tuple[str, str, RpcErrorKind]] = [
    # client, message, kind
    ("geth", "exceeds block gas limit", K.FATAL),
    ("anvil", "intrinsic gas too high -- tx.gas_limit > env.block.gas_limit", K.FATAL),
    ("geth", "invalid sender", K.FATAL),
    ("geth", "oversized data", K.FATAL),
    ("geth", "intrinsic gas too low", K.FATAL),
    ("geth", "gas uint64 overflow", K.FATAL),
    ("besu", "Intrinsic gas exceeds gas limit", K.FATAL),
    ("besu", "Transaction gas limit exceeds block gas limit", K.FATAL),
    ("besu", "Invalid signature", K.FATAL),
    (
        "parity",
        "Transaction gas is too low. There is not enough gas to cover minimal cost",
        K.FATAL,
    ),
    ("parity", "Invalid RLP data", K.FATAL),
    ("nethermind", "SenderIsContract", K.FATAL),
    (
        "nethermind",
        "GasLimitExceeded, Gas limit: 30000000, gas limit of rejected tx: 40000000",
        K.FATAL,
    ),
    ("arbitrum", "invalid message format", K.FATAL),
    ("arbitrum", "forbidden sender address", K.FATAL),
    ("optimism", "oversized data: transaction size 200000, limit 131072", K.FATAL),
    ("zksync", "Not enough gas for transaction validation", K.FATAL),
    ("zksync", "Failed to pay the fee to the operator", K.FATAL),
    ("zksync", "invalid sender. can't start a transaction from a non-account", K.FATAL),
    ("zksync", "max fee per gas higher than 2^64-1", K.FATAL),
    ("treasure", "invalid chain id for signer", K.FATAL),
    ("geth", "nonce too low", K.NONCE_TOO_LOW),
    ("geth", "nonce too low: address 0xabc, tx: 8089 state: 8090", K.NONCE_TOO_LOW),
    ("besu", "Nonce too low", K.NONCE_TOO_LOW),
    ("parity", "Transaction nonce is too low. Try incrementing the nonce.", K.NONCE_TOO_LOW),
    ("arbitrum", "invalid transaction nonce", K.NONCE_TOO_LOW),
    (
        "avalanche",
        "nonce too low: address 0xabc, current nonce (5833) > tx nonce (5511)",
        K.NONCE_TOO_LOW,
    ),
    ("nethermind", "OldNonce, Current nonce: 22, nonce of rejected tx: 17", K.NONCE_TOO_LOW),
    ("zksync", "nonce too low. allowed nonce range: 427 - 447, actual: 426", K.NONCE_TOO_LOW),
    ("moonriver", "submit transaction to pool failed: Pool(Stale)", K.NONCE_TOO_LOW),
    ("harmony", "transaction already finalized", K.NONCE_TOO_LOW),
    ("anvil", "nonce too low", K.NONCE_TOO_LOW),
    ("geth", "nonce too high", K.NONCE_TOO_HIGH),
    ("nethermind", "NonceGap, Future nonce. Expected nonce: 10", K.NONCE_TOO_HIGH),
    ("zksync", "nonce too high. allowed nonce range: 427 - 477, actual: 527", K.NONCE_TOO_HIGH),
    ("geth", "replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    ("besu", "Replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    (
        "klaytn",
        "there is another tx which has the same nonce in the tx pool",
        K.REPLACEMENT_UNDERPRICED,
    ),
    (
        "mantle",
        "failed to forward tx to sequencer, please try again. "
        "Error message: 'replacement transaction underpriced'",
        K.REPLACEMENT_UNDERPRICED,
    ),
    ("geth", "already known", K.ALREADY_KNOWN),
    ("geth", "known transaction: 0x1234", K.ALREADY_KNOWN),
    ("besu", "Known transaction", K.ALREADY_KNOWN),
    ("parity", "Transaction with the same hash was already imported.", K.ALREADY_KNOWN),
    ("nethermind", "AlreadyKnown", K.ALREADY_KNOWN),
    ("nethermind", "OwnNonceAlreadyUsed", K.ALREADY_KNOWN),
    (
        "zksync",
        "known transaction. transaction with hash 0xab is already in the system",
        K.ALREADY_KNOWN,
    ),
    ("sei", "tx already exists in cache", K.ALREADY_KNOWN),
    ("moonriver", "Pool(AlreadyImported)", K.ALREADY_KNOWN),
    ("geth", "transaction underpriced", K.UNDERPRICED),
    (
        "polygon",
        "transaction gas price below minimum: gas tip cap 25000000000 wei, "
        "minimum needed 26000000000 wei",
        K.UNDERPRICED,
    ),
    ("besu", "Gas price below configured minimum gas price", K.UNDERPRICED),
    ("arbitrum", "gas price too low", K.UNDERPRICED),
    (
        "nethermind",
        "FeeTooLow, MaxFeePerGas too low. MaxFeePerGas: 50, BaseFee: 100",
        K.UNDERPRICED,
    ),
    ("nethermind", "FeeTooLowToCompete", K.UNDERPRICED),
    ("zksync", "max fee per gas less than block base fee", K.UNDERPRICED),
    ("celo", "txpool is full", K.UNDERPRICED),
    ("geth", "insufficient funds for gas * price + value", K.INSUFFICIENT_FUNDS),
    (
        "geth",
        "insufficient funds for gas * price + value: balance 0, tx cost 21000, overshot 21000",
        K.INSUFFICIENT_FUNDS,
    ),
    ("geth", "transaction would cause overdraft", K.INSUFFICIENT_FUNDS),
    ("besu", "Upfront cost exceeds account balance", K.INSUFFICIENT_FUNDS),
    ("arbitrum", "not enough funds for gas", K.INSUFFICIENT_FUNDS),
    (
        "nethermind",
        "InsufficientFunds, Account balance: 4, cumulative cost: 22",
        K.INSUFFICIENT_FUNDS,
    ),
    ("zksync", "insufficient balance for transfer", K.INSUFFICIENT_FUNDS),
    ("anvil", "Insufficient funds for gas * price + value", K.INSUFFICIENT_FUNDS),
    (
        "hedera",
        "transaction failed precheck with status INSUFFICIENT_PAYER_BALANCE",
        K.INSUFFICIENT_FUNDS,
    ),
    ("geth", "tx fee (1.10 ether) exceeds the configured cap (1.00 ether)", K.FEE_CAP_EXCEEDED),
    ("besu", "Transaction fee cap exceeded", K.FEE_CAP_EXCEEDED),
    ("zksync", "max priority fee per gas higher than max fee per gas", K.FEE_CAP_EXCEEDED),
    ("nethermind", "503 Service Unavailable: upstream", K.TRANSPORT),
    ("proxy", "502 Bad Gateway: upstream", K.TRANSPORT),
    ("geth", "dial tcp: i/o timeout", K.TRANSPORT),
    ("geth", "execution reverted: ERC20: transfer amount exceeds balance", K.EXECUTION_REVERTED),
    ("geth", "some brand new error", K.UNKNOWN),
    ("geth", "address already reserved", K.UNKNOWN),
]


class TestClassify:
    @pytest.mark.parametrize(("client", "message", "kind"), CASES)
    def test_node_strings(self, client: str, message: str, kind: RpcErrorKind) -> None:
        assert classify(RpcFailure(message=message, code=-32000)) is kind, client

    @pytest.mark.parametrize(("client", "message", "kind"), CASES[:20])
    def test_wrapped_strings_still_match(
        self, client: str, message: str, kind: RpcErrorKind
    ) -> None:
        wrapped = f"failed to send: {message.upper()}"
        assert classify(RpcFailure(message=wrapped)) is kind, client

    def test_http_429_and_rate_limit_codes(self) -> None:
        assert classify(RpcFailure(http_status=429)) is K.RATE_LIMITED
        assert classify(RpcFailure(code=-32005, message="limit exceeded")) is K.RATE_LIMITED

    def test_transport_and_5xx(self) -> None:
        assert classify(RpcFailure(is_transport=True)) is K.TRANSPORT
        assert classify(RpcFailure(http_status=503, message="")) is K.TRANSPORT

    def test_code_3_without_text_is_a_revert(self) -> None:
        assert classify(RpcFailure(code=3, message="")) is K.EXECUTION_REVERTED

    def test_every_kind_is_covered(self) -> None:
        covered = {kind for _, _, kind in CASES} | {K.RATE_LIMITED}
        assert covered == set(RpcErrorKind)


class TestRetryable:
    def test_sending_the_same_bytes_again_can_help(self) -> None:
        assert {k for k in RpcErrorKind if is_retryable(k)} == {
            K.NONCE_TOO_HIGH,
            K.UNDERPRICED,
            K.RATE_LIMITED,
            K.TRANSPORT,
            K.UNKNOWN,
            K.INSUFFICIENT_FUNDS,
            K.FEE_CAP_EXCEEDED,
        }


class TestRevertReason:
    def test_error_string(self) -> None:
        data = "0x08c379a0" + encode(["string"], ["nope"]).hex()
        assert revert_reason(RpcFailure(code=3, data=data)) == "nope"

    def test_panic_code(self) -> None:
        data = "0x4e487b71" + encode(["uint256"], [0x11]).hex()
        assert revert_reason(RpcFailure(code=3, data={"data": data})) == "panic 0x11"

    @pytest.mark.parametrize("data", [None, "0x", "0x1234", "zz", "0x08c379a0ff", 12])
    def test_absent_or_garbled(self, data: object) -> None:
        assert revert_reason(RpcFailure(code=3, data=data)) is None
