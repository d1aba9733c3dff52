"""Benchmarks, one command each (`vigil bench ...`); figures are medians over repeated runs."""
