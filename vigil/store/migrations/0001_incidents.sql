-- Incidents, their alerts (one row per fingerprint) and their timeline. Every write is an upsert keyed by the
-- incident id and an event id, so a retried activity never duplicates a row.
CREATE TABLE IF NOT EXISTS incidents (
    incident_id       text PRIMARY KEY,
    generation        text NOT NULL,
    group_key         text NOT NULL,
    title             text NOT NULL,
    service           text,
    severity          text NOT NULL,
    category          text,
    status            text NOT NULL,
    opened_at         timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    resolved_at       timestamptz,
    closed_at         timestamptz,
    alert_count       integer NOT NULL,
    fingerprint_count integer NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_status_updated ON incidents (status, updated_at DESC);
CREATE INDEX IF NOT EXISTS incidents_service_updated ON incidents (service, updated_at DESC);

CREATE TABLE IF NOT EXISTS incident_alerts (
    incident_id text NOT NULL REFERENCES incidents (incident_id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    generation  text NOT NULL,
    source      text NOT NULL,
    status      text NOT NULL,
    severity    text NOT NULL,
    summary     text NOT NULL,
    labels      jsonb NOT NULL,
    annotations jsonb NOT NULL,
    count       integer NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    PRIMARY KEY (incident_id, fingerprint)
);

CREATE TABLE IF NOT EXISTS timeline_events (
    incident_id text NOT NULL REFERENCES incidents (incident_id) ON DELETE CASCADE,
    event_id    text NOT NULL,
    seq         integer NOT NULL,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    actor       text NOT NULL,
    message     text NOT NULL,
    data        jsonb NOT NULL,
    PRIMARY KEY (incident_id, event_id)
);
CREATE INDEX IF NOT EXISTS timeline_events_incident_at ON timeline_events (incident_id, at, seq);
