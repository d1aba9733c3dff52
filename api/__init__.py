"""The REST API: alert webhooks, incidents, health and metrics."""
