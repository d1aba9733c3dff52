"""Messages of the RCA stage.

`LLMAnswer` is the JSON schema the LLM must follow (`response_format` json_schema): closed objects
(`extra="forbid"`), bounded strings and lists, so that guided decoding cannot run away and a parsed answer is
always small. `RootCauseAnalysis` is what Vigil shows and stores, whichever way it was produced.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from vigil.analysis.models import Category, ChainHop
from vigil.knowledge.models import KnowledgeHit

EvidenceId = Annotated[str, Field(min_length=1, max_length=120)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMChainHop(_Closed):
    component: str = Field(min_length=1, max_length=120)
    relation: str = Field(min_length=1, max_length=200, description="Why the path goes through this component.")
    evidence: list[EvidenceId] = Field(min_length=1, max_length=4)


class LLMRootCause(_Closed):
    summary: str = Field(min_length=1, max_length=400)
    component: str = Field(
        min_length=1,
        max_length=120,
        description="The component at fault (a service, host, database, node, zone, external API...), which is often "
        "not the service whose alert fired.",
    )
    category: Category
    evidence: list[EvidenceId] = Field(
        min_length=1, max_length=8, description="Ids of the evidence items that show it."
    )
    chain: list[LLMChainHop] = Field(
        default_factory=list,
        max_length=5,
        description="The path from the alerting service to the component at fault, one hop per component.",
    )


class LLMClaim(_Closed):
    statement: str = Field(min_length=1, max_length=300)
    evidence: list[EvidenceId] = Field(min_length=1, max_length=6)


class LLMAction(_Closed):
    action: str = Field(min_length=1, max_length=200)
    evidence: list[EvidenceId] = Field(min_length=1, max_length=6)


class LLMAnswer(_Closed):
    """What the LLM writes."""

    root_cause: LLMRootCause
    claims: list[LLMClaim] = Field(max_length=6)
    recommended_actions: list[LLMAction] = Field(max_length=5)
    confidence: int = Field(
        ge=0, le=100, description="Percent. An integer: an unbounded float lets guided decoding write digits forever."
    )


class EvidenceItem(BaseModel):
    """One numbered piece of evidence as the RCA and its reader see it."""

    id: str
    kind: str
    title: str
    detail: str = ""


class Claim(BaseModel):
    statement: str
    evidence: list[str]


class DroppedClaim(BaseModel):
    """A claim the verifier removed, and why: it cited ids that are not in the evidence (or none at all)."""

    where: Literal["root_cause", "claim", "action", "chain"]
    text: str
    unknown_ids: list[str]


class RCAAction(BaseModel):
    action: str
    evidence: list[str]
    runbook: str | None = None
    catalogue_action: str | None = Field(
        default=None,
        description="The catalogue action this recommendation names; the workflow may propose it. Only a runbook's "
        "link sets it, never the text of logs or of a model.",
    )


class Hypothesis(BaseModel):
    summary: str
    component: str
    category: Category
    score: float = Field(ge=0, le=1)
    evidence: list[str]


class RCARootCause(BaseModel):
    summary: str
    component: str
    evidence: list[str]
    chain: list[ChainHop] = Field(
        default_factory=list,
        description="From the alerting service to the component at fault, each hop citing evidence.",
    )


class RootCauseAnalysis(BaseModel):
    """The diagnosis of an incident. `source` says who wrote it; `confidence` is Vigil's own, computed from the
    evidence and the agreement of the analysers, never only what a model said about itself."""

    source: Literal["llm", "deterministic"]
    model: str | None = None
    llm_error: str | None = Field(default=None, description="Why the LLM answer was not used, when it was not.")
    category: Category
    confidence: float = Field(ge=0, le=1)
    severity: str
    code_related: bool
    root_cause: RCARootCause
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)
    recommended_actions: list[RCAAction] = Field(default_factory=list)
    dropped: list[DroppedClaim] = Field(default_factory=list)
    evidence: list[EvidenceItem] = Field(default_factory=list)
    runbooks: list[KnowledgeHit] = Field(default_factory=list)
    similar_incidents: list[KnowledgeHit] = Field(default_factory=list)
    probabilities: dict[str, float] = Field(default_factory=dict, description="The classifier's, per category.")
    support: dict[str, float] = Field(
        default_factory=dict, description="Share of detector findings (severity-weighted) per category."
    )


class ChatQuery(BaseModel):
    """POST /api/v1/chat/query and `vigil ask`."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(default=5, ge=1, le=20, description="Runbook passages to read.")


class Citation(BaseModel):
    id: str
    source: str
    title: str
    collection: str
    score: float


class ChatAnswer(BaseModel):
    answer: str
    citations: list[Citation]
    source: Literal["llm", "extractive"]
    llm_error: str | None = None


class LLMDocAnswer(_Closed):
    """What the LLM writes for a question."""

    answer: str = Field(min_length=1, max_length=1500)
    citations: list[EvidenceId] = Field(min_length=1, max_length=6)
