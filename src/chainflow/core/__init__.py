"""Foundations every layer may use: settings, errors, types, logging, clock."""
