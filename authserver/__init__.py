"""authserver: an Ably-compatible token service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("authserver")  # pyproject.toml's, as installed
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
