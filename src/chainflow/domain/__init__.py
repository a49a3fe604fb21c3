"""Business rules, one package per noun."""
