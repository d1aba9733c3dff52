"""PostgreSQL: the durable record of incidents, alerts and timeline events."""
