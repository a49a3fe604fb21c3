"""Errors of transaction requests, each with a stable code."""

from chainflow.core.errors import Conflict, Forbidden, InvalidInput, NotFound

# `error.code` of a request whose fee cap could not pay the base fee (issue 14): expired
# unsigned when its valid_until passed, or cancelled by a self-transfer after it was signed.
FEE_CAP_BELOW_BASE_FEE = "fee_cap_below_base_fee"


class TxNotFound(NotFound):
    code = "transaction_not_found"


class NotTransactionOwner(Forbidden):
    """A key asked to change a request another key submitted (issue 14: any write key could
    cancel any request). 403, not 404: every key can read the request, so its existence is
    no secret, and a 404 would contradict the GET."""

    code = "transaction_owner_required"


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


class WalletMismatch(InvalidInput):
    code = "wallet_mismatch"


class FeeAboveCap(InvalidInput):
    code = "fee_above_chain_cap"


class AlreadyFinal(Conflict):
    code = "transaction_final"


class FeeCapZero(InvalidInput):
    code = "fee_cap_zero"
    title = "Fee cap of zero"


class FeeCapBelowTip(InvalidInput):
    code = "fee_cap_below_tip"
    title = "Fee cap below tip"
