-- One row per remediation run, keyed by incident + proposal (+ "/rollback"): what makes running an action
-- idempotent. Claimed as 'running' before the executor starts, finished with the outcome and the redacted output;
-- a row still 'running' on a retry means an earlier attempt died mid-action.
CREATE TABLE IF NOT EXISTS action_runs (
    key         text PRIMARY KEY,
    incident_id text NOT NULL,
    proposal_id integer NOT NULL,
    action      text NOT NULL,
    params      jsonb NOT NULL,
    dry_run     boolean NOT NULL,
    status      text NOT NULL,
    output      text NOT NULL DEFAULT '',
    attempts    integer NOT NULL DEFAULT 1,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE INDEX IF NOT EXISTS action_runs_incident ON action_runs (incident_id, started_at);
