"""Fakes of external services for tests: real HTTP servers speaking each service's own API (Slack's Web API, and
others), so the production clients run unmodified against them."""
