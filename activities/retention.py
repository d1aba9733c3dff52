"""Log and span retention: the `delete_old_logs` activity of the incidents worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity

from vigil.settings import Settings
from vigil.store.database import Store


class RetentionActivities:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    @activity.defn(name="delete_old_logs")
    async def delete_old_logs(self) -> int:
        """Delete stored log lines and spans older than VIGIL_LOG_RETENTION_HOURS; returns how many rows went (lines
        and spans together). Idempotent."""
        cutoff = datetime.now(UTC) - timedelta(hours=self._settings.log_retention_hours)
        lines = await self._store.delete_logs_before(cutoff)
        spans = await self._store.delete_spans_before(cutoff)
        activity.logger.info("deleted %d log lines and %d spans older than %s", lines, spans, cutoff.isoformat())
        return lines + spans
