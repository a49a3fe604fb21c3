"""Classify JSON-RPC errors by the nodes' own strings (research/txm-reliability.md §3). Pure.

One ordered table, first match wins; strings are matched case-insensitively as substrings, so a
wrapped message (Mantle's "Error message: '…'") matches too. Order matters: replacement
underpriced before underpriced, fatal before everything (Chainlink's precedence).
"""

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True)
class RpcFailure:
    """An error as received: a JSON-RPC error object and/or an HTTP or transport failure."""

    message: str = ""
    code: int | None = None
    data: Any = None
    http_status: int | None = None
    is_transport: bool = False


K = RpcErrorKind
_TABLE: list[tuple[RpcErrorKind, tuple[str, ...]]] = [
    (K.EXECUTION_REVERTED, ("execution reverted", "revert", "vm execution error")),
    (
        K.FATAL,
        (
            "exceeds block gas limit",
            "intrinsic gas too high",  # anvil: tx.gas_limit > env.block.gas_limit
            "invalid sender",
            "negative value",
            "oversized data",
            "gas uint64 overflow",
            "intrinsic gas too low",
            "intrinsic gas exceeds gas limit",
            "transaction gas limit exceeds block gas limit",
            "invalid signature",
            "transaction gas is too low",
            "transaction cost exceeds current gas limit",
            "invalid rlp",
            "supplied gas is beyond limit",
            "transaction is not permitted",
            "transaction is too big",
            "is banned in local queue",
            "senderiscontract",
            "sender is contract",
            "int256overflow",
            "failedtoresolvesender",
            "gaslimitexceeded",
            "invalid message format",
            "forbidden sender address",
            "not enough gas for transaction validation",
            "failed to pay the fee to the operator",
            "error function_selector = 0x",
            "can't start a transaction from a non-account",
            "higher than 2^64-1",
            "invalid chain id for signer",
            "gas limit too low",
            "tx too large",
            "only replay-protected",
            "transaction type not supported",
            "max initcode size exceeded",
            "sender not an eoa",
            "invalid shard",
        ),
    ),
    (
        K.NONCE_TOO_LOW,
        (
            "nonce too low",
            "transaction nonce is too low",
            "invalid transaction nonce",
            "oldnonce",
            "pool(stale)",
            "transaction already finalized",
            "nonce has already been used",
        ),
    ),
    (
        K.REPLACEMENT_UNDERPRICED,
        (
            "replacement transaction underpriced",
            "there is another tx which has the same nonce",
            "another transaction with same nonce in the queue",
        ),
    ),
    (
        K.ALREADY_KNOWN,
        (
            "already known",
            "known transaction",
            "already imported",
            "alreadyknown",
            "ownnoncealreadyused",
            "already in the system",
            "already exists in cache",
            "pool(alreadyimported)",
        ),
    ),
    (K.NONCE_TOO_HIGH, ("nonce too high", "noncegap", "future nonce")),
    (
        K.INSUFFICIENT_FUNDS,
        (
            "insufficient funds",
            "insufficient balance",
            "would cause overdraft",
            "upfront cost exceeds account balance",
            "not enough funds",
            "insufficientfunds",
            "insufficient_payer_balance",
            "signer had insufficient balance",
        ),
    ),
    (
        K.FEE_CAP_EXCEEDED,
        (
            "exceeds the configured cap",
            "transaction fee cap exceeded",
            "invalid gas fee cap",
            "max priority fee per gas higher than max fee per gas",
            "max fee per gas higher than max priority fee per gas",
        ),
    ),
    (
        K.UNDERPRICED,
        (
            "transaction underpriced",
            "gas price below minimum",
            "below configured minimum",
            "gas price is too low",
            "gas price too low",
            "feetoolow",
            "less than block base fee",
            "unacceptable gas price",
            "gasprice is less than gas price minimum",
            "max fee per gas less than block base fee",
            "txpool is full",
            "too many transactions in the queue",
        ),
    ),
    (K.RATE_LIMITED, ("rate limit", "too many requests", "limit exceeded", "request limit")),
    (
        K.TRANSPORT,
        (
            "502 bad gateway",
            "503 service",
            "service unavailable",
            "network is unreachable",
            "i/o timeout",
            "408 request timeout",
            "context deadline exceeded",
            "timeout",
        ),
    ),
]
_REVERT_CODES = {3}


def classify(failure: RpcFailure) -> RpcErrorKind:
    """The kind of an RPC failure, from HTTP status, transport flag, code and message."""
    if failure.http_status == 429 or (
        failure.code == -32005 and "limit" in failure.message.lower()
    ):
        return K.RATE_LIMITED
    if failure.is_transport or (failure.http_status or 0) >= 500:
        return K.TRANSPORT
    text = failure.message.lower()
    for kind, needles in _TABLE:
        if any(needle in text for needle in needles):
            return kind
    if failure.code in _REVERT_CODES:
        return K.EXECUTION_REVERTED
    return K.UNKNOWN


def is_retryable(kind: RpcErrorKind) -> bool:
    """Whether re-sending the same bytes later can succeed (unknown: yes, as Chainlink does)."""
    return kind in {
        K.NONCE_TOO_HIGH,
        K.UNDERPRICED,
        K.RATE_LIMITED,
        K.TRANSPORT,
        K.UNKNOWN,
        K.INSUFFICIENT_FUNDS,
        K.FEE_CAP_EXCEEDED,
    }


_ERROR_SELECTOR = "08c379a0"
_PANIC_SELECTOR = "4e487b71"
_HEX_DATA = re.compile(r"^0x[0-9a-fA-F]*$")


def revert_reason(failure: RpcFailure) -> str | None:
    """Decode `Error(string)` or `Panic(uint256)` revert data, if the node sent it."""
    data = failure.data.get("data") if isinstance(failure.data, dict) else failure.data
    if not isinstance(data, str) or not _HEX_DATA.match(data) or len(data) < 10:
        return None
    selector, payload = data[2:10].lower(), bytes.fromhex(data[10:])
    try:
        if selector == _ERROR_SELECTOR:
            return str(decode(["string"], payload)[0])
        if selector == _PANIC_SELECTOR:
            return f"panic 0x{decode(['uint256'], payload)[0]:x}"
    except (DecodingError, ValueError):
        return None
    return None
