"""Weft's benchmarks: ``python -m bench`` (full, minutes) or ``python -m bench --smoke`` (seconds, CI)."""
