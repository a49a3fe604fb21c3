"""Every table, imported in one place so migrations see the whole metadata."""

from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.audit.models import AuditEntry
from chainflow.domain.chains.models import Chain, RpcEndpoint
from chainflow.domain.policies.models import WalletPolicy, WalletPolicyVersion
from chainflow.domain.transactions.models import Transaction, TxAttempt, TxEventRow
from chainflow.domain.wallets.models import Wallet, WalletChain
from chainflow.infra.db.base import Base

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "Chain",
    "RpcEndpoint",
    "Transaction",
    "TxAttempt",
    "TxEventRow",
    "Wallet",
    "WalletChain",
    "WalletPolicy",
    "WalletPolicyVersion",
    "metadata",
]
