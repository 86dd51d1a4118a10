"""Ending tokens early: revocation targets, the durable outbox and the call to Ably's REST API."""
