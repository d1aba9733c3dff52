"""Temporal activities, one module per role."""
