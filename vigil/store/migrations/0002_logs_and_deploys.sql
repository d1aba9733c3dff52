-- Log lines and deploy/change events (the evidence an incident gathers besides its alerts).
--
-- log_lines is append-only and written with COPY. Reads are "one service, one time window": the (service, ts)
-- btree serves them. Retention deletes by ts alone; a BRIN index on ts answers that for almost nothing at insert
-- time because lines arrive roughly in time order. received_at is when Vigil stored the line (ts is when it
-- happened, per the sender).
CREATE TABLE IF NOT EXISTS log_lines (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL,
    service     text NOT NULL,
    level       text,
    message     text NOT NULL,
    labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
    trace_id    text,
    request_id  text,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS log_lines_service_ts ON log_lines (service, ts);
CREATE INDEX IF NOT EXISTS log_lines_ts_brin ON log_lines USING brin (ts);

-- One row per deploy/change; a re-sent event (same service, version, commit and time) is stored once.
CREATE TABLE IF NOT EXISTS deploy_events (
    id          bigserial PRIMARY KEY,
    service     text NOT NULL,
    version     text NOT NULL,
    commit      text,
    author      text,
    description text,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS deploy_events_identity ON deploy_events (service, version, COALESCE(commit, ''), ts);
CREATE INDEX IF NOT EXISTS deploy_events_service_ts ON deploy_events (service, ts);
CREATE INDEX IF NOT EXISTS deploy_events_ts ON deploy_events (ts);
