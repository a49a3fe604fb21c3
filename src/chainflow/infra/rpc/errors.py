"""Classify JSON-RPC failures by the nodes' own error strings (research/txm-reliability.md §3)."""

import re
from dataclasses import dataclass
from enum import StrEnum

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError


class RpcErrorKind(StrEnum):
    FATAL = "fatal"
    NONCE_TOO_LOW = "nonce_too_low"
    NONCE_TOO_HIGH = "nonce_too_high"
    REPLACEMENT_UNDERPRICED = "replacement_underpriced"
    ALREADY_KNOWN = "already_known"
    UNDERPRICED = "underpriced"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    FEE_CAP_EXCEEDED = "fee_cap_exceeded"
    RATE_LIMITED = "rate_limited"
    TRANSPORT = "transport"
    EXECUTION_REVERTED = "execution_reverted"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class RpcFailure:
    """An error as received: a JSON-RPC error object, an HTTP status, or a transport failure."""

    message: str = ""
    code: int | None = None
    data: object = None
    http_status: int | None = None
    is_transport: bool = False  # timeout, connection refused or reset: no answer at all


K = RpcErrorKind

# Case-insensitive regexes, searched anywhere in the message, so wrapped texts match too
# ("failed to send: …", Mantle's "Error message: '…'"). Every client's strings are tried
# whatever client answered, as Chainlink does. The insertion order is the precedence, first
# match wins: Chainlink's (fatal, nonce too low, replacement underpriced, already known,
# underpriced, nonce too high, insufficient funds, transport, fee cap), with two additions in
# front and provider rate limits last.
_RULES: dict[RpcErrorKind, tuple[str, ...]] = {
    # A revert's text is the contract's, not the node's: "execution reverted: nonce too low"
    # must not read as a nonce error. (zkSync's "Validation revert: …" is the bootloader's,
    # and its strings are fatal below, as in Chainlink's tests.)
    K.EXECUTION_REVERTED: (
        r"execution reverted",  # geth, Erigon, Besu, Nethermind, anvil, Arbitrum, Hedera
        r"vm execution error",  # Parity/OpenEthereum, Nethermind
        r"vm exception while processing transaction",  # Ganache, Hardhat
    ),
    # Look like another kind but are not (research §3.3 leaves them Unknown).
    K.UNKNOWN: (
        r"authority nonce too low",  # geth, EIP-7702: an authorization's nonce, not the tx's
    ),
    K.FATAL: (
        # geth, Erigon, op-geth, bor (core/error.go, core/txpool/errors.go)
        r"exceeds block gas limit",
        r"invalid sender",
        r"negative value",
        r"oversized data",
        r"gas uint64 overflow",
        r"intrinsic gas too low",
        # geth: left Unknown by Chainlink (research §3.3), but invalid by consensus rules
        r"transaction gas limit too high",  # EIP-7825
        r"nonce has max value",
        r"max initcode size exceeded",
        r"sender not an eoa",
        r"transaction type not supported",
        r"only replay-protected",
        r"higher than 2\^(?:64|256)-1",  # geth (2^256-1), zkSync (2^64-1)
        # Erigon txpool discard reasons
        r"gasuintoverflow",
        r"intrinsicgas",
        r"rlptoolong",
        r"initcode too large",
        # Besu JsonRpcError ("Transaction gas limit exceeds block gas limit" is covered above)
        r"intrinsic gas exceeds gas limit",
        r"invalid[ _]signature",  # also Hedera's "precheck with status INVALID_SIGNATURE"
        r"invalid transaction type",
        r"wrong chain ?id",
        r"chainid (?:not supported|is required)",
        r"sender account not authorized",
        # Parity/OpenEthereum
        r"transaction gas is too low",
        r"transaction cost exceeds current gas limit",
        r"invalid rlp",
        r"supplied gas is beyond limit",
        r"transaction is not permitted",
        r"transaction is too big",
        r"is banned in local queue",
        # Nethermind (a bare "Invalid" or "Invalid, …", not "invalid transaction nonce")
        r"senderiscontract",
        r"(?:^|: )invalid(?:,|$)",
        r"int256overflow",
        r"failedtoresolvesender",
        r"gaslimitexceeded",
        # Arbitrum (Nitro)
        r"invalid message format",
        r"forbidden sender address",
        # zkSync
        r"not enough gas for transaction validation",
        r"failed to pay the fee to the operator",
        r"error function_selector = 0x",
        r"can't start a transaction from a non-account",
        # anvil
        r"intrinsic gas too high",  # "-- tx.gas_limit > env.block.gas_limit"
        r"transaction gas limit is greater than the block gas limit",
        r"incompatible eip-155 transaction",
        r"failed to decode (?:signed )?transaction",
        # anvil, Treasure
        r"invalid chain id for signer",
        # Harmony
        r"invalid shard",
        r"staking message does not match directive message",
        r"address of transaction in blacklist",
        # Hedera
        r"insufficient of intrinsic gas",
        # Sei (its ": insufficient funds", also fatal for Chainlink, is left to that kind)
        r"tx too large",
        # Monad
        r"gas limit too low",
        # zkEVM / X Layer zk counters: terminally stuck, Chainlink fails the tx
        r"not enough \w+ counters",
        r"out of counters",
    ),
    # Our nonce is used: by our own earlier send (crash after a send) or by a mined tx.
    K.NONCE_TOO_LOW: (
        r"nonce too low",  # geth, Erigon, Besu, Klaytn, Arbitrum, Avalanche, zkSync, anvil
        r"transaction nonce is too low",  # Parity
        r"invalid transaction nonce",  # Arbitrum (historically too low and too high alike)
        r"oldnonce",  # Nethermind
        r"pool\(stale\)",  # Moonriver/Substrate
        r"transaction already finalized",  # Harmony (already mined)
        r"(?:^|: )mined$",  # Erigon discard reason
        r"nonce (?:has )?already (?:been )?used",  # ethers-style NONCE_EXPIRED text
    ),
    K.REPLACEMENT_UNDERPRICED: (
        r"replacement transaction underpriced",  # geth, Erigon, Besu, Klaytn, anvil, Mantle
        r"another tx which has the same nonce",  # Klaytn
        r"another transaction with same nonce in the queue",  # Parity
        r"could not replace existing tx",  # Erigon
        r"insufficient gas price to replace existing transaction",  # anvil/reth pool
    ),
    K.ALREADY_KNOWN: (
        r"already known",  # geth, Erigon, op-geth, bor, Mantle
        r"known transaction",  # geth, Besu, Klaytn, zkSync
        r"already imported",  # Parity, anvil
        r"alreadyimported",  # Moonriver "Pool(AlreadyImported)"
        r"alreadyknown",  # Nethermind, Gnosis
        r"ownnoncealreadyused",  # Nethermind (Chainlink: already in mempool)
        r"already in the system",  # zkSync
        r"already exists in cache",  # Sei
        r"existing txn? with same hash",  # Erigon
    ),
    # Below the node's minimum, or the pool is full. Chainlink counts a full pool as accepted
    # ("LimitReached"); keeping the bytes and retrying is safe either way, since a re-send of
    # a transaction the node kept answers "already known".
    K.UNDERPRICED: (
        r"underpriced",  # geth, Erigon, Klaytn, bor, op-geth "transaction underpriced"
        r"gas price below minimum",  # Polygon bor, Erigon
        r"below configured minimum gas price",  # Besu, Hedera
        r"below current base fee",  # Besu
        r"gas price is too low",  # Parity
        r"gas price too low",  # Arbitrum, Metis, Hedera
        r"feetoolow",  # Nethermind, also FeeTooLowToCompete
        r"fee too low",  # Erigon
        r"less than block base fee",  # zkSync, Arbitrum, anvil; Astar "gas price less than …"
        r"unacceptable gas price",  # zkSync
        r"fair pubdata price too high",  # zkSync
        r"gasprice is less than gas price minimum",  # Celo
        r"too many transactions in the queue",  # Parity
        r"pool is full",  # geth ErrTxPoolOverflow, Celo, Klaytn ("txpool is full")
        r"sub-pool is full",  # Erigon
        r"(?:queue|pool) full",  # Arbitrum sequencer
    ),
    K.NONCE_TOO_HIGH: (
        r"nonce too high",  # geth, Erigon, Arbitrum, zkSync, Hedera, anvil
        r"noncegap",  # Nethermind: refuses nonces past current + pending count
        r"incorrect nonce",  # older Besu (-32006, since renamed "Nonce too high")
    ),
    K.INSUFFICIENT_FUNDS: (
        r"insufficient funds",  # geth, Erigon, Parity, Arbitrum, Klaytn, Celo, zkSync, anvil
        r"insufficient balance",  # geth, Parity, zkSync, Monad
        r"would cause overdraft",  # geth
        r"upfront cost exceeds account balance",  # Besu
        r"not enough funds for gas",  # Arbitrum
        r"insufficientfunds",  # Nethermind
        r"insufficient_payer_balance",  # Hedera
    ),
    K.TRANSPORT: (
        r"502 bad gateway",
        r"503 service",  # "Temporarily Unavailable", Nethermind's "Unavailable: …"
        r"service (?:temporarily )?unavailable",
        r"408 request timeout",
        r"network is unreachable",
        r"connection (?:refused|reset)",
        r"i/o timeout",
        r"context deadline exceeded",  # Go clients and proxies
        r"context canceled",
        r"timed? ?out",
        r"returns a null value for transaction",  # Hedera relay
        r"initial sync is still in progress",  # Besu: this node cannot answer yet
    ),
    K.FEE_CAP_EXCEEDED: (
        r"exceeds the configured cap",  # geth, Erigon, Celo, bor, op-geth (--rpc.txfeecap)
        r"transaction fee cap exceeded",  # Besu
        r"invalid gas fee cap",  # Klaytn
        # geth ErrTipAboveFeeCap (zkSync, anvil), Klaytn's reversed wording
        r"max priority fee per gas higher than max fee per gas",
        r"max fee per gas higher than max priority fee per gas",
    ),
    K.RATE_LIMITED: (
        r"rate[ -]?limit",  # Infura "daily request count exceeded, request rate limited"
        r"too many requests",
        r"request limit",
        r"compute units per second capacity",  # Alchemy
        r"capacity limit exceeded",  # Alchemy's monthly quota: only another endpoint helps
    ),
}
_PATTERNS: tuple[tuple[RpcErrorKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile("|".join(f"(?:{rule})" for rule in rules), re.IGNORECASE))
    for kind, rules in _RULES.items()
)
_HTTP_TOO_MANY_REQUESTS = 429
# EIP-1474 -32005 "Limit exceeded" (Infura), and Alchemy's 429 in the error object. Read only
# after the strings: Besu also answers "Transaction gas limit exceeds block gas limit" -32005.
_RATE_LIMIT_CODES = frozenset({-32005, _HTTP_TOO_MANY_REQUESTS})
_REVERT_CODE = 3  # geth and anvil answer reverts with code 3 and the revert data


def classify(failure: RpcFailure) -> RpcErrorKind:
    """Sort one RPC failure into the kind that decides what the caller does next."""
    if failure.http_status == _HTTP_TOO_MANY_REQUESTS:
        return K.RATE_LIMITED
    if failure.is_transport:
        return K.TRANSPORT
    for kind, pattern in _PATTERNS:
        if pattern.search(failure.message):
            return kind
    return _classify_by_code(failure)


def _classify_by_code(failure: RpcFailure) -> RpcErrorKind:
    if failure.code in _RATE_LIMIT_CODES:
        return K.RATE_LIMITED
    if failure.code == _REVERT_CODE:
        return K.EXECUTION_REVERTED
    # A node's own error inside an HTTP 5xx was read from its message; a bare 5xx is a gateway's.
    if failure.http_status is not None and failure.http_status >= 500:
        return K.TRANSPORT
    return K.UNKNOWN


# Retryable: the same signed bytes may still be accepted if sent again later, maybe to another
# endpoint, without re-signing (research §3.2, "Category → action per TXM").
_RETRYABLE = frozenset(
    {
        K.TRANSPORT,  # all three TXMs back off and re-send the same bytes
        K.RATE_LIMITED,  # the endpoint did not even look: back off or fail over
        K.UNKNOWN,  # Chainlink probes the pending nonce, else retries the attempt; OP, FFTM retry
        K.NONCE_TOO_HIGH,  # Chainlink "Retryable": accepted once the earlier nonce lands
        K.UNDERPRICED,  # goes in once the base fee falls or the pool drains; bumps are separate
        K.INSUFFICIENT_FUNDS,  # Chainlink re-sends at the same price every head until funded
        K.FEE_CAP_EXCEEDED,  # one node's --rpc.txfeecap; Chainlink checks the nonce and retries
    }
)
# Not retryable: FATAL and EXECUTION_REVERTED never enter a pool; NONCE_TOO_LOW, ALREADY_KNOWN
# and REPLACEMENT_UNDERPRICED mean a tx at this nonce is already pooled or mined (§9).


def is_retryable(kind: RpcErrorKind) -> bool:
    """Tell whether sending the same signed bytes again later can succeed."""
    return kind in _RETRYABLE


_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
# Hex revert data; Parity prefixes it with "Reverted ".
_REVERT_HEX = re.compile(r"(?:reverted )?0x((?:[0-9a-f]{2})*)", re.IGNORECASE)


def revert_reason(failure: RpcFailure) -> str | None:
    """Decode an `Error(string)` or `Panic(uint256)` revert payload; None when there is none."""
    payload = _revert_payload(failure.data)
    if payload is None:
        return None
    selector, body = payload[:4], payload[4:]
    try:
        if selector == _ERROR_SELECTOR:
            return str(decode(["string"], body)[0])
        if selector == _PANIC_SELECTOR:
            return f"panic 0x{decode(['uint256'], body)[0]:02x}"
    except (DecodingError, ValueError):  # truncated, badly padded, or a string not in UTF-8
        return None
    return None  # a custom error: its ABI is the caller's to know


def _revert_payload(data: object) -> bytes | None:
    if isinstance(data, dict):
        data = data.get("data")  # some nodes nest it: {"message": …, "data": "0x…"}
    if not isinstance(data, str):
        return None
    match = _REVERT_HEX.fullmatch(data.strip())
    return bytes.fromhex(match.group(1)) if match else None
