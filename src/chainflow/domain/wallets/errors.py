"""Errors of wallets and lanes, each with a stable code."""

from chainflow.core.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)


class WalletNotFound(NotFound):
    code = "wallet_not_found"


class InvalidAddress(InvalidInput):
    """Shaped like an address (e.g. in a path or a filter) but not a valid one."""

    code = "invalid_address"


class WalletExists(Conflict):
    code = "wallet_exists"


class InvalidStatusTransition(Conflict):
    code = "invalid_status_transition"


class AdminRequired(Forbidden):
    code = "admin_required"


class LaneNotFound(NotFound):
    code = "wallet_chain_not_found"


class MasterKeyMismatch(ConfigError):
    """Stored wallets were wrapped by a master key other than the configured one."""

    code = "master_key_mismatch"


class MasterKeyRotated(Unavailable):
    """The master key was rotated while this process ran: it must not seal under its old key."""

    code = "master_key_rotated"
