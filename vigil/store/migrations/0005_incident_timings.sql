-- MTTx of each closed incident (time to detect, acknowledge, diagnose, mitigate, resolve), written once at close.
CREATE TABLE IF NOT EXISTS incident_timings (
    incident_id text PRIMARY KEY,
    timings     jsonb NOT NULL,
    closed_at   timestamptz NOT NULL DEFAULT now()
);
