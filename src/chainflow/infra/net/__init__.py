"""Outbound network rules: which addresses server-side requests may reach."""
