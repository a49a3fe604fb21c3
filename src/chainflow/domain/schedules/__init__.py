"""Schedules: recurring transactions and DCA swaps, run exactly once per occurrence (issue 19)."""
