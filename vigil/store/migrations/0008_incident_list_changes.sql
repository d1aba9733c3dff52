-- The console's live incident list. Each incident row and each diagnosis row records the transaction that last
-- wrote it (`changed_xid`), so one poller reads only what changed since its last look: it keeps the oldest
-- transaction still in progress at that look (`pg_snapshot_xmin`) as its cursor, and a writer that commits late
-- is never skipped, which a cursor on `updated_at` (workflow time, written by retried activities) cannot promise.
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS changed_xid xid8;
ALTER TABLE incident_diagnoses ADD COLUMN IF NOT EXISTS changed_xid xid8;

CREATE OR REPLACE FUNCTION vigil_mark_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS incidents_mark_changed ON incidents;
CREATE TRIGGER incidents_mark_changed BEFORE INSERT OR UPDATE ON incidents
    FOR EACH ROW EXECUTE FUNCTION vigil_mark_changed();
DROP TRIGGER IF EXISTS incident_diagnoses_mark_changed ON incident_diagnoses;
CREATE TRIGGER incident_diagnoses_mark_changed BEFORE INSERT OR UPDATE ON incident_diagnoses
    FOR EACH ROW EXECUTE FUNCTION vigil_mark_changed();

UPDATE incidents SET changed_xid = pg_current_xact_id() WHERE changed_xid IS NULL;
UPDATE incident_diagnoses SET changed_xid = pg_current_xact_id() WHERE changed_xid IS NULL;

CREATE INDEX IF NOT EXISTS incidents_changed ON incidents (changed_xid);
CREATE INDEX IF NOT EXISTS incident_diagnoses_changed ON incident_diagnoses (changed_xid);
-- The list's default order (newest change first) and its "acknowledged by" column.
CREATE INDEX IF NOT EXISTS incidents_updated ON incidents (updated_at DESC);
CREATE INDEX IF NOT EXISTS timeline_events_acknowledged ON timeline_events (incident_id, at DESC, seq DESC)
    WHERE kind = 'acknowledged';
