"""Alembic migrations of the whole schema; `chainflow db upgrade` runs them."""
