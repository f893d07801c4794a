"""Helpers for tests and benchmarks: chain builders and protocol fakes."""
