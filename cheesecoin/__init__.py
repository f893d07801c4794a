"""CheeseCoin: a small, readable Bitcoin-inspired cryptocurrency on Twisted."""

__version__ = "0.1.0"
