"""Store-writing activities of the incidents worker. Idempotent: every row is keyed by incident + event id."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from vigil.models import PersistIncidentInput, PersistIncidentResult
from vigil.mttx import IncidentTimings, observe_mttx
from vigil.store.database import Store


class StoreActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="persist_incident")
    async def persist_incident(self, data: PersistIncidentInput) -> PersistIncidentResult:
        """PostgreSQL unreachable: raised as is and retried. Data it refuses (too large for a row or an index,
        out of range) fails non-retryably, so one bad write never stalls the incident's record for good."""
        try:
            return await self._store.persist_incident(data)
        except (
            asyncpg.DataError,
            asyncpg.ProgramLimitExceededError,
            asyncpg.IntegrityConstraintViolationError,
        ) as exc:
            raise ApplicationError(
                f"the store refused the write: {exc}"[:500], type=STORE_REJECTED, non_retryable=True
            ) from exc

    @activity.defn(name="record_incident_timings")
    async def record_incident_timings(self, timings: IncidentTimings) -> None:
        """At close: the incident's MTTx into PostgreSQL and, once, into this worker's histograms."""
        if await self._store.save_timings(timings):
            observe_mttx(timings, activity.metric_meter())


STORE_REJECTED = "StoreRejected"
