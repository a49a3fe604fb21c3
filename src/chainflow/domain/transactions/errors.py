"""Errors of transaction requests, each with a stable code."""

from chainflow.core.errors import Conflict, Forbidden, InvalidInput, NotFound


class TxNotFound(NotFound):
    code = "transaction_not_found"


class NotTransactionOwner(Forbidden):
    """A key asked to change a request another key submitted (issue 14: any write key could
    cancel any request). 403, not 404: every key can read the request, so its existence is
    no secret, and a 404 would contradict the GET."""

    code = "transaction_owner_required"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


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
