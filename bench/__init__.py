"""Benchmarks of the live service against the broker's own floor (see bench/RESULTS.md)."""
