"""authserver: an Ably-compatible token service."""

__version__ = "0.1.0"
