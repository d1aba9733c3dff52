"""Root-cause analysis: deterministic from the analysis engine's evidence and retrieval, LLM-written when an
OpenAI-compatible server is configured, every claim checked against the evidence it cites."""
