-- Diagnoses (RCA) of incidents: one row per incident and source ("deterministic", "llm"), replaced when an
-- incident is diagnosed again (a reopened incident), so a re-run activity writes the same row.
CREATE TABLE IF NOT EXISTS incident_diagnoses (
    incident_id text NOT NULL,
    source      text NOT NULL,
    category    text NOT NULL,
    confidence  double precision NOT NULL,
    rca         jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, source)
);
