"""Completion webhooks: delivering what the outbox owes to each request's ``callback_url``."""
