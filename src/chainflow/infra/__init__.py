"""Adapters to the outside world (database, RPC, signing, queue); no business rules."""
