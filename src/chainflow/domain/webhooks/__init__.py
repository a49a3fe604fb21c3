"""Webhooks: endpoints with signed, retried, ordered deliveries of the events outbox."""
