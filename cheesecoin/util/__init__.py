"""Twisted service helpers, the CPU thread pool, local ports."""
