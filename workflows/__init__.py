"""Temporal workflows. Deterministic code only: no I/O, clocks or randomness."""
