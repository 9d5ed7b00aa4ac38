"""Benchmarks: measure the targets of the issues (never asserted as timings in tests)."""
