"""Evaluation data and metrics (generated, labelled corpora)."""
