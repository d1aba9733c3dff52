-- Spans (OTLP traces): the evidence for the call graph between services and for blaming a failing callee.
--
-- Written with COPY like log_lines and deleted by the same retention. The diagnosis reads whole traces that touch
-- the incident's services in a time window: (service, start_ts) finds the traces, (trace_id) fetches them.
-- Ids are lowercase hex as OTLP/JSON writes them. A span re-sent by an exporter's retry may be stored twice;
-- readers count it once (vigil.analysis.traces.SpanForest).
CREATE TABLE IF NOT EXISTS spans (
    id             bigserial PRIMARY KEY,
    trace_id       text NOT NULL,
    span_id        text NOT NULL,
    parent_span_id text,
    service        text NOT NULL,
    name           text NOT NULL,
    kind           text NOT NULL,
    start_ts       timestamptz NOT NULL,
    end_ts         timestamptz NOT NULL,
    error          boolean NOT NULL DEFAULT false,
    status_message text,
    attributes     jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS spans_service_start ON spans (service, start_ts);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_start_brin ON spans USING brin (start_ts);
