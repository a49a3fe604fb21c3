"""Wallets: encrypted keys, lifecycle, and per-chain lanes."""
