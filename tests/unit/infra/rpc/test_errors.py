"""RPC error classification against real node strings (research/txm-reliability.md §3)."""

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
GETH = -32000  # geth and its forks (Erigon, bor, op-geth, Nitro) answer tx errors with -32000
PARITY = -32010  # Parity/OpenEthereum and Nethermind: "transaction rejected"
ANVIL = -32003  # anvil: EIP-1474 "transaction rejected"
REVERT = 3  # geth, anvil: execution reverted

# (client, JSON-RPC code, message, kind). Texts are verbatim from the research file, which
# quotes Chainlink's errors.go/errors_test.go and geth, from the clients' own sources where
# noted (anvil's eth/error.rs, Erigon's txpoolcfg, Besu's JsonRpcError), or from provider
# answers (Infura, Alchemy). bor and op-geth are geth forks: they send geth's strings.
CASES: list[tuple[str, int | None, str, RpcErrorKind]] = [
    # Fatal: the node will never accept these bytes.
    ("geth", GETH, "exceeds block gas limit", K.FATAL),
    ("geth", GETH, "invalid sender", K.FATAL),
    ("geth", GETH, "negative value", K.FATAL),
    ("geth", GETH, "oversized data", K.FATAL),
    ("geth", GETH, "gas uint64 overflow", K.FATAL),
    ("geth", GETH, "intrinsic gas too low", K.FATAL),
    ("geth", GETH, "transaction gas limit too high", K.FATAL),
    ("geth", GETH, "nonce has max value", K.FATAL),
    ("geth", GETH, "max fee per gas higher than 2^256-1", K.FATAL),
    ("geth", GETH, "only replay-protected (EIP-155) transactions allowed over RPC", K.FATAL),
    ("erigon", GETH, "exceeds block gas limit", K.FATAL),
    ("erigon", GETH, "IntrinsicGas", K.FATAL),
    ("erigon", GETH, "RLPTooLong", K.FATAL),
    ("besu", -32003, "Intrinsic gas exceeds gas limit", K.FATAL),
    ("besu", -32005, "Transaction gas limit exceeds block gas limit", K.FATAL),
    ("besu", -32002, "Invalid signature", K.FATAL),
    ("besu", GETH, "Wrong chainId", K.FATAL),
    (
        "parity",
        PARITY,
        "Transaction gas is too low. There is not enough gas to cover minimal cost of the "
        "transaction (minimal: 100 got: 50) Try increasing supplied gas.",
        K.FATAL,
    ),
    (
        "parity",
        PARITY,
        "Transaction cost exceeds current gas limit. Limit: 50, got: 100. "
        "Try decreasing supplied gas.",
        K.FATAL,
    ),
    ("parity", PARITY, "Invalid RLP data: some old bollocks", K.FATAL),
    ("parity", PARITY, "Supplied gas is beyond limit.", K.FATAL),
    ("parity", PARITY, "Sender is banned in local queue.", K.FATAL),
    ("nethermind", PARITY, "call failed: SenderIsContract", K.FATAL),
    ("nethermind", PARITY, "call failed: Invalid", K.FATAL),
    ("nethermind", PARITY, "call failed: Invalid, transaction Hash is null", K.FATAL),
    ("nethermind", PARITY, "call failed: Int256Overflow", K.FATAL),
    ("nethermind", PARITY, "call failed: FailedToResolveSender", K.FATAL),
    (
        "nethermind",
        PARITY,
        "call failed: GasLimitExceeded, Gas limit: 100, gas limit of rejected tx: 150",
        K.FATAL,
    ),
    ("arbitrum", GETH, "invalid message format", K.FATAL),
    ("arbitrum", GETH, "forbidden sender address", K.FATAL),
    ("optimism", GETH, "oversized data: transaction size 200000, limit 131072", K.FATAL),
    ("polygon", GETH, "intrinsic gas too low", K.FATAL),
    ("zksync", GETH, "intrinsic gas too low", K.FATAL),
    (
        "zksync",
        GETH,
        "failed to validate the transaction. reason: Validation revert: Account validation "
        "error: Not enough gas for transaction validation",
        K.FATAL,
    ),
    (
        "zksync",
        GETH,
        "failed to validate the transaction. reason: Validation revert: Failed to pay for the "
        "transaction: Failed to pay the fee to the operator",
        K.FATAL,
    ),
    (
        "zksync",
        GETH,
        "failed to validate the transaction. reason: Validation revert: Account validation "
        "error: Error function_selector = 0x, data = 0x",
        K.FATAL,
    ),
    ("zksync", GETH, "invalid sender. can't start a transaction from a non-account", K.FATAL),
    (
        "zksync",
        GETH,
        "Failed to serialize transaction: max fee per gas higher than 2^64-1",
        K.FATAL,
    ),
    (
        "zksync",
        GETH,
        "Failed to serialize transaction: oversized data. max: 1000000; actual: 1000000",
        K.FATAL,
    ),
    ("anvil", GETH, "intrinsic gas too high -- CallerGasLimitMoreThanBlock", K.FATAL),
    ("anvil", ANVIL, "invalid chain id for signer", K.FATAL),
    ("anvil", ANVIL, "sender not an eoa", K.FATAL),
    ("anvil", ANVIL, "max initcode size exceeded", K.FATAL),
    ("anvil", -32602, "Failed to decode transaction", K.FATAL),
    ("harmony", GETH, "`from` address of transaction in blacklist", K.FATAL),
    ("hedera", GETH, "transaction failed precheck with status INVALID_SIGNATURE", K.FATAL),
    (
        "mantle",
        GETH,
        "failed to forward tx to sequencer, please try again. Error message: 'invalid sender'",
        K.FATAL,
    ),
    ("monad", GETH, "Gas limit too low", K.FATAL),
    (
        "zkevm",
        GETH,
        "failed to add tx to the pool: not enough step counters to continue the execution",
        K.FATAL,
    ),
    # Nonce too low / already mined: a tx at this nonce is on chain.
    ("geth", GETH, "nonce too low", K.NONCE_TOO_LOW),
    (
        "geth",
        GETH,
        "nonce too low: address 0x336394A3219e71D9d9bd18201d34E95C1Bb7122C, tx: 8089 state: 8090",
        K.NONCE_TOO_LOW,
    ),
    ("erigon", GETH, "nonce too low", K.NONCE_TOO_LOW),
    ("besu", -32001, "Nonce too low", K.NONCE_TOO_LOW),
    (
        "parity",
        PARITY,
        "Transaction nonce is too low. Try incrementing the nonce.",
        K.NONCE_TOO_LOW,
    ),
    ("arbitrum", GETH, "transaction rejected: nonce too low", K.NONCE_TOO_LOW),
    ("arbitrum", GETH, "invalid transaction nonce", K.NONCE_TOO_LOW),
    (
        "avalanche",
        GETH,
        "call failed: nonce too low: address 0x0499BEA33347cb62D79A9C0b1EDA01d8d329894c "
        "current nonce (5833) > tx nonce (5511)",
        K.NONCE_TOO_LOW,
    ),
    ("nethermind", PARITY, "call failed: OldNonce", K.NONCE_TOO_LOW),
    (
        "nethermind",
        PARITY,
        "call failed: OldNonce, Current nonce: 22, nonce of rejected tx: 17",
        K.NONCE_TOO_LOW,
    ),
    ("optimism", GETH, "nonce too low", K.NONCE_TOO_LOW),
    ("polygon", GETH, "nonce too low", K.NONCE_TOO_LOW),
    (
        "zksync",
        GETH,
        "nonce too low. allowed nonce range: 427 - 447, actual: 426",
        K.NONCE_TOO_LOW,
    ),
    ("anvil", ANVIL, "nonce too low", K.NONCE_TOO_LOW),
    ("hedera", GETH, "Nonce too low. Provided nonce: 15, current nonce: 15", K.NONCE_TOO_LOW),
    (
        "moonriver",
        GETH,
        "primary http (http://***REDACTED***:9933) call failed: submit transaction to pool "
        "failed: Pool(Stale)",
        K.NONCE_TOO_LOW,
    ),
    ("harmony", GETH, "transaction already finalized", K.NONCE_TOO_LOW),
    ("erigon", GETH, "mined", K.NONCE_TOO_LOW),
    # Nonce too high: an earlier nonce is missing.
    ("geth", GETH, "nonce too high", K.NONCE_TOO_HIGH),
    ("erigon", GETH, "nonce too high", K.NONCE_TOO_HIGH),
    ("besu", -32006, "Nonce too high", K.NONCE_TOO_HIGH),
    (
        "arbitrum",
        GETH,
        "nonce too high: address 0x336394A3219e71D9d9bd18201d34E95C1Bb7122C, tx: 8089 state: 8090",
        K.NONCE_TOO_HIGH,
    ),
    ("nethermind", PARITY, "call failed: NonceGap", K.NONCE_TOO_HIGH),
    (
        "nethermind",
        PARITY,
        "call failed: NonceGap, Future nonce. Expected nonce: 10",
        K.NONCE_TOO_HIGH,
    ),
    (
        "zksync",
        GETH,
        "nonce too high. allowed nonce range: 427 - 477, actual: 527",
        K.NONCE_TOO_HIGH,
    ),
    ("anvil", ANVIL, "Nonce too high", K.NONCE_TOO_HIGH),
    ("hedera", GETH, "Nonce too high. Provided nonce: 16, current nonce: 15", K.NONCE_TOO_HIGH),
    # Replacement underpriced: a tx of ours holds the nonce at a higher price.
    ("geth", GETH, "replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    ("erigon", GETH, "replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    ("besu", GETH, "Replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    ("optimism", GETH, "replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    ("polygon", GETH, "replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    ("anvil", ANVIL, "replacement transaction underpriced", K.REPLACEMENT_UNDERPRICED),
    (
        "klaytn",
        GETH,
        "there is another tx which has the same nonce in the tx pool",
        K.REPLACEMENT_UNDERPRICED,
    ),
    (
        "parity",
        PARITY,
        "Transaction gas price 100wei is too low. There is another transaction with same nonce "
        "in the queue with gas price 150wei. Try increasing the gas price or incrementing the "
        "nonce.",
        K.REPLACEMENT_UNDERPRICED,
    ),
    ("erigon", GETH, "could not replace existing tx", K.REPLACEMENT_UNDERPRICED),
    (
        "mantle",
        GETH,
        "failed to forward tx to sequencer, please try again. "
        "Error message: 'replacement transaction underpriced'",
        K.REPLACEMENT_UNDERPRICED,
    ),
    # Already known: the node holds these very bytes.
    ("geth", GETH, "already known", K.ALREADY_KNOWN),
    (
        "geth",
        GETH,
        "known transaction: 0x7f657507aee0511e36d2d1972a6b22e917cc89f92b6c12c4dbd57eaabb236960",
        K.ALREADY_KNOWN,
    ),
    ("geth", GETH, "Known transaction (7f65)", K.ALREADY_KNOWN),
    ("erigon", GETH, "block already known", K.ALREADY_KNOWN),
    ("erigon", GETH, "INTERNAL_ERROR: existing tx with same hash", K.ALREADY_KNOWN),
    ("besu", GETH, "Known transaction", K.ALREADY_KNOWN),
    ("parity", PARITY, "Transaction with the same hash was already imported.", K.ALREADY_KNOWN),
    ("nethermind", PARITY, "call failed: AlreadyKnown", K.ALREADY_KNOWN),
    ("nethermind", PARITY, "call failed: OwnNonceAlreadyUsed", K.ALREADY_KNOWN),
    ("optimism", GETH, "already known", K.ALREADY_KNOWN),
    ("polygon", GETH, "already known", K.ALREADY_KNOWN),
    (
        "zksync",
        GETH,
        "known transaction. transaction with hash 0x6013…3053 is already in the system",
        K.ALREADY_KNOWN,
    ),
    (
        "zksync",
        REVERT,
        'ErrorObject { code: ServerError(3), message: \\"known transaction. transaction with '
        'hash 0xf016…ad63 is already in the system\\", data: Some(RawValue(\\"0x\\")) }',
        K.ALREADY_KNOWN,
    ),
    ("anvil", ANVIL, "transaction already imported", K.ALREADY_KNOWN),
    ("gnosis", GETH, "alreadyknown", K.ALREADY_KNOWN),
    ("sei", GETH, "tx already exists in cache", K.ALREADY_KNOWN),
    (
        "moonriver",
        GETH,
        "primary http (http://***REDACTED***:9933) call failed: submit transaction to pool "
        "failed: Pool(AlreadyImported)",
        K.ALREADY_KNOWN,
    ),
    # Underpriced: below the node's minimum, or the pool is full.
    ("geth", GETH, "transaction underpriced", K.UNDERPRICED),
    ("geth", GETH, "txpool is full", K.UNDERPRICED),
    ("erigon", GETH, "transaction underpriced", K.UNDERPRICED),
    ("erigon", GETH, "fee too low", K.UNDERPRICED),
    ("erigon", GETH, "queued sub-pool is full", K.UNDERPRICED),
    ("besu", -32009, "Gas price below configured minimum gas price", K.UNDERPRICED),
    ("besu", -32009, "Gas price below current base fee", K.UNDERPRICED),
    (
        "parity",
        PARITY,
        "Transaction gas price is too low. It does not satisfy your node's minimal gas price "
        "(minimal: 100 got: 50). Try increasing the gas price.",
        K.UNDERPRICED,
    ),
    (
        "parity",
        PARITY,
        "There are too many transactions in the queue. Your transaction was dropped due to "
        "limit. Try increasing the fee.",
        K.UNDERPRICED,
    ),
    ("nethermind", PARITY, "FeeTooLow", K.UNDERPRICED),
    (
        "nethermind",
        PARITY,
        "FeeTooLow, MaxFeePerGas too low. MaxFeePerGas: 50, BaseFee: 100, "
        "MaxPriorityFeePerGas:200, Block number: 5",
        K.UNDERPRICED,
    ),
    ("nethermind", PARITY, "FeeTooLowToCompete", K.UNDERPRICED),
    ("arbitrum", GETH, "gas price too low", K.UNDERPRICED),
    ("arbitrum", GETH, "max fee per gas less than block base fee", K.UNDERPRICED),
    ("arbitrum", GETH, "sequencer pending tx pool full, please try again", K.UNDERPRICED),
    ("arbitrum", GETH, "queue full", K.UNDERPRICED),
    ("optimism", GETH, "transaction underpriced", K.UNDERPRICED),
    (
        "polygon",
        GETH,
        "transaction gas price below minimum: gas tip cap 25000000000 wei, "
        "minimum needed 26000000000 wei",
        K.UNDERPRICED,
    ),
    ("zksync", GETH, "max fee per gas less than block base fee", K.UNDERPRICED),
    (
        "zksync",
        GETH,
        "virtual machine entered unexpected state. please contact developers and provide "
        "transaction details that caused this error. Error description: The operator included "
        "transaction with an unacceptable gas price",
        K.UNDERPRICED,
    ),
    ("anvil", ANVIL, "max fee per gas less than block base fee", K.UNDERPRICED),
    ("klaytn", GETH, "transaction underpriced", K.UNDERPRICED),
    ("celo", GETH, "gasprice is less than gas price minimum floor", K.UNDERPRICED),
    ("astar", GETH, "gas price less than block base fee", K.UNDERPRICED),
    (
        "metis",
        GETH,
        "primary websocket (wss://ws-mainnet.metis.io) call failed: gas price too low: "
        "18000000000 wei, use at least tx.gasPrice = 19500000000 wei",
        K.UNDERPRICED,
    ),
    (
        "hedera",
        GETH,
        "Gas price '830000000000' is below configured minimum gas price '950000000000'",
        K.UNDERPRICED,
    ),
    # Insufficient funds.
    ("geth", GETH, "insufficient funds for transfer", K.INSUFFICIENT_FUNDS),
    ("geth", GETH, "insufficient funds for gas * price + value", K.INSUFFICIENT_FUNDS),
    ("geth", GETH, "insufficient balance for transfer", K.INSUFFICIENT_FUNDS),
    ("geth", GETH, "transaction would cause overdraft", K.INSUFFICIENT_FUNDS),
    ("erigon", GETH, "insufficient funds for gas * price + value", K.INSUFFICIENT_FUNDS),
    ("besu", -32004, "Upfront cost exceeds account balance", K.INSUFFICIENT_FUNDS),
    (
        "parity",
        PARITY,
        "Insufficient balance for transaction. Balance=100.25, Cost=200.50",
        K.INSUFFICIENT_FUNDS,
    ),
    ("arbitrum", GETH, "not enough funds for gas", K.INSUFFICIENT_FUNDS),
    (
        "arbitrum",
        GETH,
        "insufficient funds for gas * price + value: address "
        "0xb68D832c1241bc50db1CF09e96c0F4201D5539C9 have 9934612900000000 want 9936662900000000",
        K.INSUFFICIENT_FUNDS,
    ),
    (
        "nethermind",
        PARITY,
        "call failed: InsufficientFunds, Balance is 1092404690719251702 less than sending "
        "value + gas 7165512000464000000",
        K.INSUFFICIENT_FUNDS,
    ),
    ("optimism", GETH, "insufficient funds for gas * price + value", K.INSUFFICIENT_FUNDS),
    ("polygon", GETH, "insufficient funds for gas * price + value", K.INSUFFICIENT_FUNDS),
    (
        "zksync",
        GETH,
        "insufficient funds for gas + value. balance: 42719769622667482000, fee: "
        "48098250000000, value: 42719769622667482000",
        K.INSUFFICIENT_FUNDS,
    ),
    ("anvil", ANVIL, "Insufficient funds for gas * price + value", K.INSUFFICIENT_FUNDS),
    ("celo", GETH, "insufficient funds for gas * price + value + gatewayFee", K.INSUFFICIENT_FUNDS),
    (
        "hedera",
        GETH,
        "transaction failed precheck with status INSUFFICIENT_PAYER_BALANCE",
        K.INSUFFICIENT_FUNDS,
    ),
    ("monad", GETH, "Signer had insufficient balance", K.INSUFFICIENT_FUNDS),
    # Fee cap: the tx costs more than this node's --rpc.txfeecap, or its fee fields disagree.
    (
        "geth",
        GETH,
        "tx fee (1.10 ether) exceeds the configured cap (1.00 ether)",
        K.FEE_CAP_EXCEEDED,
    ),
    ("geth", GETH, "tx fee (1.10 FTM) exceeds the configured cap (1.00 FTM)", K.FEE_CAP_EXCEEDED),
    (
        "erigon",
        GETH,
        "tx fee (1.10 ether) exceeds the configured cap (1.00 ether)",
        K.FEE_CAP_EXCEEDED,
    ),
    ("besu", GETH, "Transaction fee cap exceeded", K.FEE_CAP_EXCEEDED),
    (
        "zksync",
        GETH,
        "max priority fee per gas higher than max fee per gas",
        K.FEE_CAP_EXCEEDED,
    ),
    ("anvil", ANVIL, "max priority fee per gas higher than max fee per gas", K.FEE_CAP_EXCEEDED),
    ("klaytn", GETH, "invalid gas fee cap", K.FEE_CAP_EXCEEDED),
    (
        "celo",
        GETH,
        "tx fee (1.10 of currency celo) exceeds the configured cap (1.00 celo)",
        K.FEE_CAP_EXCEEDED,
    ),
    # Transport: the answer came from a gateway, not the node.
    (
        "nethermind",
        None,
        "call failed: 503 Service Unavailable: <html>\r\n<head><title>503 Service Temporarily "
        "Unavailable</title></head>\r\n</html>\r\n",
        K.TRANSPORT,
    ),
    (
        "arbitrum",
        None,
        "call failed: 502 Bad Gateway: <html>\r\n<head><title>502 Bad Gateway</title></head>",
        K.TRANSPORT,
    ),
    ("geth", None, "dial tcp 10.0.0.1:8545: i/o timeout", K.TRANSPORT),
    ("geth", None, "context deadline exceeded", K.TRANSPORT),
    ("besu", -32008, "Initial sync is still in progress", K.TRANSPORT),
    (
        "hedera",
        GETH,
        "Transaction execution returns a null value for transaction",
        K.TRANSPORT,
    ),
    # Rate limited by a provider.
    ("infura", -32005, "daily request count exceeded, request rate limited", K.RATE_LIMITED),
    ("infura", -32005, "project ID request rate exceeded", K.RATE_LIMITED),
    (
        "alchemy",
        429,
        "Your app has exceeded its compute units per second capacity. If you have retries "
        "enabled, you can safely ignore this message.",
        K.RATE_LIMITED,
    ),
    (
        "alchemy",
        -32600,
        "Monthly capacity limit exceeded. Visit https://dashboard.alchemyapi.io/settings/billing "
        "to upgrade your scaling policy for continued service.",
        K.RATE_LIMITED,
    ),
    # Execution reverted (eth_estimateGas, eth_call; Arbitrum also on send).
    ("geth", REVERT, "execution reverted", K.EXECUTION_REVERTED),
    (
        "geth",
        REVERT,
        "execution reverted: ERC20: transfer amount exceeds balance",
        K.EXECUTION_REVERTED,
    ),
    ("erigon", REVERT, "execution reverted", K.EXECUTION_REVERTED),
    ("besu", GETH, "Execution reverted", K.EXECUTION_REVERTED),
    ("nethermind", -32015, "VM execution error.", K.EXECUTION_REVERTED),
    ("arbitrum", GETH, "execution reverted: stale report", K.EXECUTION_REVERTED),
    ("optimism", REVERT, "execution reverted", K.EXECUTION_REVERTED),
    ("polygon", REVERT, "execution reverted", K.EXECUTION_REVERTED),
    (
        "zksync",
        REVERT,
        "execution reverted: Ownable: caller is not the owner",
        K.EXECUTION_REVERTED,
    ),
    ("anvil", REVERT, "execution reverted: custom error 0xfb8f41b2", K.EXECUTION_REVERTED),
    ("hedera", GETH, "execution reverted", K.EXECUTION_REVERTED),
    # Unknown: no table covers them (research §3.3); Chainlink probes the pending nonce.
    ("geth", GETH, "address already reserved", K.UNKNOWN),
    ("geth", GETH, "future transaction tries to replace pending", K.UNKNOWN),
    ("geth", GETH, "account limit exceeded", K.UNKNOWN),
    ("geth", GETH, "authority already reserved", K.UNKNOWN),
    ("geth", GETH, "authority nonce too low", K.UNKNOWN),
    ("arbitrum", GETH, "tx dropped due to L2 congestion", K.UNKNOWN),
]
REQUIRED_CLIENTS = {
    "geth",
    "erigon",
    "besu",
    "nethermind",
    "arbitrum",
    "optimism",
    "polygon",
    "zksync",
    "anvil",
}


def _ids(cases: list[tuple[str, int | None, str, RpcErrorKind]]) -> list[str]:
    return [f"{client}:{kind}:{message[:48]}" for client, _, message, kind in cases]


class TestClassify:
    @pytest.mark.parametrize(("client", "code", "message", "kind"), CASES, ids=_ids(CASES))
    def test_node_strings(
        self, client: str, code: int | None, message: str, kind: RpcErrorKind
    ) -> None:
        assert classify(RpcFailure(code=code, message=message)) is kind, client

    @pytest.mark.parametrize(("client", "code", "message", "kind"), CASES, ids=_ids(CASES))
    def test_wrapped_and_upper_case_strings(
        self, client: str, code: int | None, message: str, kind: RpcErrorKind
    ) -> None:
        wrapped = f"eth_sendRawTransaction failed: {message.upper()}"
        assert classify(RpcFailure(code=code, message=wrapped)) is kind, client

    def test_revert_reason_is_never_read_as_a_node_string(self) -> None:
        failure = RpcFailure(code=GETH, message="execution reverted: nonce too low")
        assert classify(failure) is K.EXECUTION_REVERTED

    def test_replacement_underpriced_is_not_plain_underpriced(self) -> None:
        assert classify(RpcFailure(message="replacement transaction underpriced")) is (
            K.REPLACEMENT_UNDERPRICED
        )
        assert classify(RpcFailure(message="transaction underpriced")) is K.UNDERPRICED

    def test_code_3_without_text_is_a_revert(self) -> None:
        assert classify(RpcFailure(code=REVERT, message="")) is K.EXECUTION_REVERTED

    def test_http_429_is_rate_limited_even_from_the_transport(self) -> None:
        failure = RpcFailure(http_status=429, is_transport=True, message="Too Many Requests")
        assert classify(failure) is K.RATE_LIMITED

    def test_limit_exceeded_code_without_text_is_rate_limited(self) -> None:
        assert classify(RpcFailure(code=-32005, message="limit exceeded")) is K.RATE_LIMITED

    def test_besu_block_gas_limit_keeps_its_meaning_under_code_32005(self) -> None:
        failure = RpcFailure(code=-32005, message="Transaction gas limit exceeds block gas limit")
        assert classify(failure) is K.FATAL

    def test_transport_failure_wins_over_its_text(self) -> None:
        failure = RpcFailure(is_transport=True, message="connection reset: nonce too low")
        assert classify(failure) is K.TRANSPORT

    def test_bare_5xx_is_transport(self) -> None:
        assert classify(RpcFailure(http_status=503)) is K.TRANSPORT

    def test_node_error_inside_a_5xx_is_read(self) -> None:
        failure = RpcFailure(http_status=500, code=GETH, message="nonce too low")
        assert classify(failure) is K.NONCE_TOO_LOW

    def test_unmatched_text_is_unknown(self) -> None:
        assert classify(RpcFailure(code=GETH, message="some old bollocks")) is K.UNKNOWN

    def test_every_kind_has_a_node_string(self) -> None:
        assert {kind for *_, kind in CASES} == set(RpcErrorKind)

    def test_every_named_client_has_strings(self) -> None:
        assert {client for client, *_ in CASES} >= REQUIRED_CLIENTS


RETRYABLE = {
    K.FATAL: False,
    K.EXECUTION_REVERTED: False,
    K.NONCE_TOO_LOW: False,
    K.ALREADY_KNOWN: False,
    K.REPLACEMENT_UNDERPRICED: False,
    K.NONCE_TOO_HIGH: True,
    K.UNDERPRICED: True,
    K.INSUFFICIENT_FUNDS: True,
    K.FEE_CAP_EXCEEDED: True,
    K.RATE_LIMITED: True,
    K.TRANSPORT: True,
    K.UNKNOWN: True,
}


class TestIsRetryable:
    @pytest.mark.parametrize(("kind", "expected"), RETRYABLE.items())
    def test_same_bytes_again(self, kind: RpcErrorKind, expected: bool) -> None:
        assert is_retryable(kind) is expected

    def test_every_kind_is_decided(self) -> None:
        assert set(RETRYABLE) == set(RpcErrorKind)


def error_payload(reason: str) -> str:
    return "0x08c379a0" + encode(["string"], [reason]).hex()


def panic_payload(code: int) -> str:
    return "0x4e487b71" + encode(["uint256"], [code]).hex()


class TestRevertReason:
    def test_error_string(self) -> None:
        data = error_payload("ERC20: transfer amount exceeds balance")
        failure = RpcFailure(code=REVERT, message="execution reverted", data=data)
        assert revert_reason(failure) == "ERC20: transfer amount exceeds balance"

    @pytest.mark.parametrize(
        ("code", "text"), [(0x01, "panic 0x01"), (0x11, "panic 0x11"), (0x32, "panic 0x32")]
    )
    def test_panic_code(self, code: int, text: str) -> None:
        assert revert_reason(RpcFailure(code=REVERT, data=panic_payload(code))) == text

    def test_nested_data_object(self) -> None:
        failure = RpcFailure(code=REVERT, data={"data": error_payload("nope")})
        assert revert_reason(failure) == "nope"

    def test_parity_reverted_prefix_and_upper_case_hex(self) -> None:
        data = "Reverted 0x" + error_payload("nope")[2:].upper()
        assert revert_reason(RpcFailure(code=-32015, data=data)) == "nope"

    def test_custom_error_is_left_to_the_caller(self) -> None:
        data = "0xfb8f41b2" + encode(["address"], ["0x" + "11" * 20]).hex()
        assert revert_reason(RpcFailure(code=REVERT, data=data)) is None

    def test_string_that_is_not_utf8(self) -> None:
        body = encode(["uint256", "uint256"], [32, 2]) + b"\xff\xfe" + bytes(30)
        data = "0x08c379a0" + body.hex()
        assert revert_reason(RpcFailure(code=REVERT, data=data)) is None

    @pytest.mark.parametrize(
        "data",
        [None, "", "0x", "0x1234", "zz", "0x08c379a0ff", "0x08c379a", 12, ["0x08c379a0"], {}],
    )
    def test_absent_or_garbled(self, data: object) -> None:
        assert revert_reason(RpcFailure(code=REVERT, data=data)) is None
