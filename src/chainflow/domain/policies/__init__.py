"""Spending policies of wallets: rules checked when a transaction request is admitted."""
