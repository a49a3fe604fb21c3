"""Transaction requests: lifecycle, nonces, signing, sending, tracking."""
