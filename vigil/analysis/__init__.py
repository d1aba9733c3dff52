"""The evidence and analysis engine (ml worker): normalisation, templates, fingerprints, detectors."""
