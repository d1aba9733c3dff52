-- Responders' verdicts on diagnoses (vigil.feedback): every verdict is kept (the latest per incident counts), with
-- what was diagnosed when it was given, so a later re-diagnosis never changes what a verdict judged.
CREATE TABLE IF NOT EXISTS diagnosis_feedback (
    id                   bigserial PRIMARY KEY,
    incident_id          text NOT NULL,
    verdict              text NOT NULL CHECK (verdict IN ('right', 'wrong')),
    category             text,
    component            text,
    note                 text NOT NULL DEFAULT '',
    actor                text NOT NULL,
    diagnosed_category   text,
    diagnosed_component  text,
    diagnosis_confidence double precision,
    at                   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS diagnosis_feedback_incident_at ON diagnosis_feedback (incident_id, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS diagnosis_feedback_at ON diagnosis_feedback (at);
-- Insights bucket incidents by opening time.
CREATE INDEX IF NOT EXISTS incidents_opened_at ON incidents (opened_at);
