"""What the knowledge base returns and what it indexes when an incident closes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class KnowledgeSearchQuery(BaseModel):
    """`KnowledgeSearchWorkflow` input: the console's Knowledge search, answered by the ml worker."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=500)
    k: int = Field(default=5, ge=1, le=20, description="Hits per collection.")
    collections: list[Collection] = Field(default_factory=lambda: list(COLLECTIONS), min_length=1, max_length=2)


class KnowledgeSearchResult(BaseModel):
    """The hybrid search's hits, best first within each collection (scores of different collections are not
    comparable). Past incidents carry responders' verdicts on their diagnoses (vigil.feedback)."""

    hits: list[KnowledgeHit]
