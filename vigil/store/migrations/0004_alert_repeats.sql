-- Alert notifications that changed nothing (still firing, re-sent, older than what is known) are counted apart
-- from firing episodes (`count`), so a re-notification or a sender's retry never inflates an incident.
ALTER TABLE incident_alerts ADD COLUMN IF NOT EXISTS repeats integer NOT NULL DEFAULT 0;
