"""Vigil's shared package: domain models, settings, the CLI and the wiring the processes share."""

__version__ = "0.1.0"
