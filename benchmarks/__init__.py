"""Benchmarks, run from the checkout as ``python -m benchmarks.NAME`` (see the Makefile)."""
