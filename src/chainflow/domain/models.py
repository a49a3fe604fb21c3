"""Every table, imported in one place so migrations see the whole metadata."""

from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.audit.models import AuditEntry
from chainflow.domain.chains.models import Chain, RpcEndpoint
from chainflow.domain.events.models import EventRow
from chainflow.domain.policies.models import WalletPolicy, WalletPolicyVersion
from chainflow.domain.schedules.models import Schedule, ScheduleRun
from chainflow.domain.transactions.models import Transaction, TxAttempt, TxEventRow
from chainflow.domain.wallets.models import Wallet, WalletChain
from chainflow.domain.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chainflow.infra.db.base import Base

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "Chain",
    "EventRow",
    "RpcEndpoint",
    "Schedule",
    "ScheduleRun",
    "Transaction",
    "TxAttempt",
    "TxEventRow",
    "Wallet",
    "WalletChain",
    "WalletPolicy",
    "WalletPolicyVersion",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
