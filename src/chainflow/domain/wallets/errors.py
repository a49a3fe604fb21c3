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


class SignerKeyNotFound(InvalidInput):
    """A wallet was to be bound to a key the signing backend does not hold."""

    code = "signer_key_not_found"


class SignerWrongCurve(InvalidInput):
    """The backend's key is not secp256k1: it cannot sign Ethereum transactions."""

    code = "signer_wrong_curve"


class SignerWrongKeyUsage(InvalidInput):
    """The backend's key cannot sign (a symmetric or encryption-only KMS key)."""

    code = "signer_wrong_key_usage"


class SignerNotConfigured(InvalidInput):
    """The requested signer type is not configured (or not supported) in this process."""

    code = "signer_not_configured"


class SignerCanaryFailed(InvalidInput):
    """The backend's test signature did not recover to the key's address: nothing stored."""

    code = "signer_canary_failed"
