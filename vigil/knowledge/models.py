"""What the knowledge base returns and what it indexes when an incident closes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Collection = Literal["runbooks", "incidents"]
RUNBOOKS: Collection = "runbooks"
INCIDENTS: Collection = "incidents"
COLLECTIONS: tuple[Collection, ...] = (RUNBOOKS, INCIDENTS)


class KnowledgeHit(BaseModel):
    """One retrieved passage. `source` is the runbook's path, or the incident id for the incidents collection."""

    source: str
    title: str
    score: float
    text: str
    collection: Collection


class ResolvedIncident(BaseModel):
    """A closed incident as the knowledge base keeps it, so later incidents can find it."""

    incident_id: str
    title: str
    summary: str
    root_cause: str
    resolution: str
    category: str
    services: list[str] = Field(default_factory=list)
    resolved_at: datetime

    def document(self) -> str:
        """The text that is embedded and returned as the hit's `text`."""
        lines = [
            self.title,
            f"Summary: {self.summary}",
            f"Root cause: {self.root_cause}",
            f"Resolution: {self.resolution}",
            f"Category: {self.category}",
        ]
        if self.services:
            lines.append(f"Services: {', '.join(self.services)}")
        return "\n".join(line for line in lines if line.strip())
