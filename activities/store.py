"""Store-writing activities of the incidents worker. Idempotent: every row is keyed by incident + event id."""

from __future__ import annotations

from temporalio import activity

from vigil.models import PersistIncidentInput, PersistIncidentResult
from vigil.store.database import Store


class StoreActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="persist_incident")
    async def persist_incident(self, data: PersistIncidentInput) -> PersistIncidentResult:
        return await self._store.persist_incident(data)
