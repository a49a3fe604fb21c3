"""Chainflow: self-hosted, nonce-safe transaction execution for EVM wallets."""

__version__ = "0.1.0"
