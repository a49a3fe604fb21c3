"""Errors of transaction requests, each with a stable code."""

from chainflow.core.errors import Conflict, InvalidInput, NotFound


class TxNotFound(NotFound):
    code = "transaction_not_found"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


class InvalidIdempotencyKey(InvalidInput):
    code = "invalid_idempotency_key"


class ChainDisabled(Conflict):
    code = "chain_disabled"


class WalletNotActive(Conflict):
    code = "wallet_not_active"


class LaneDisabled(Conflict):
    code = "wallet_chain_disabled"


class UnknownWallet(InvalidInput):
    code = "unknown_wallet"


class FeeAboveCap(InvalidInput):
    code = "fee_above_chain_cap"


class AlreadyFinal(Conflict):
    code = "transaction_final"
