"""Feedback on an incident's diagnosis: right or wrong, and when wrong the right category and component.

Responders give it on the incident page (ui.incident); the store keeps every verdict with what was diagnosed at
the time (`StoredFeedback.diagnosed_*`), so a later re-diagnosis never changes what a verdict was about. It is
used twice:

- training: `labelled_example` turns a verdict into a labelled classifier example (`vigil model train
  --feedback-from-store`, `vigil feedback export`);
- retrieval: `rerank_similar` ranks a past incident whose diagnosis was confirmed above one marked wrong, and
  shows a corrected incident with its corrected category and component.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from vigil.analysis.models import Category
from vigil.knowledge.models import KnowledgeHit


class FeedbackVerdict(StrEnum):
    RIGHT = "right"
    WRONG = "wrong"


class DiagnosisFeedback(BaseModel):
    """One responder's verdict on an incident's diagnosis. `category`/`component`: the right ones, when the
    responder knows them (with `right`, they may restate the diagnosed ones)."""

    incident_id: str = Field(min_length=1, max_length=300)
    verdict: FeedbackVerdict
    category: Category | None = None
    component: str | None = Field(default=None, max_length=200)
    note: str = Field(default="", max_length=2000)
    actor: str = Field(min_length=1, max_length=200)

    @field_validator("component")
    @classmethod
    def _blank_component_is_none(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None


class StoredFeedback(DiagnosisFeedback):
    """A verdict as stored: its id, when it was given, and the diagnosis it judged (None when the incident had
    no stored diagnosis then)."""

    id: int
    at: datetime
    diagnosed_category: str | None
    diagnosed_component: str | None
    diagnosis_confidence: float | None

    @property
    def right_category(self) -> Category | None:
        """The category this verdict says is right: the one given, else (for `right`) the diagnosed one; None
        for a `wrong` without a correction, which says what the category is not, but not what it is."""
        if self.category is not None:
            return self.category
        if self.verdict is not FeedbackVerdict.RIGHT or self.diagnosed_category is None:
            return None
        try:
            return Category(self.diagnosed_category)
        except ValueError:  # a category since retired
            return None

    @property
    def right_component(self) -> str | None:
        if self.component is not None:
            return self.component
        return self.diagnosed_component if self.verdict is FeedbackVerdict.RIGHT else None


# --- similar incidents --------------------------------------------------------------------------------------

CONFIRMED_BONUS = 0.05
"""Added to (confirmed, or corrected) or taken from (marked wrong, uncorrected) a similar incident's retrieval
score. Hybrid scores are reciprocal-rank fusions (vigil.knowledge.store: 1.0 for first in both searches, 0.83
for first and second, 0.67 for second in both, ...) that tie often; a verdict breaks ties and near-ties (scores
less than twice this apart) and never reorders incidents the search ranks clearly apart."""


def feedback_note(feedback: StoredFeedback) -> str:
    """The line a similar incident's text gains from its latest verdict (no free-text note: that stays on the
    incident page)."""
    if feedback.verdict is FeedbackVerdict.RIGHT:
        return f"Responder feedback: diagnosis confirmed by {feedback.actor}."
    corrected = [
        part
        for part in (
            f"category {feedback.category.value}" if feedback.category else None,
            f"component {feedback.component}" if feedback.component else None,
        )
        if part
    ]
    if not corrected:
        return f"Responder feedback: diagnosis marked wrong by {feedback.actor}."
    return f"Responder feedback: diagnosis corrected by {feedback.actor}: {', '.join(corrected)}."


def _corrected_text(text: str, feedback: StoredFeedback) -> str:
    lines = text.splitlines()
    if feedback.verdict is FeedbackVerdict.WRONG and feedback.category is not None:
        lines = [
            f"Category: {feedback.category.value} (diagnosed: {line.removeprefix('Category: ')})"
            if line.startswith("Category: ")
            else line
            for line in lines
        ]
    return "\n".join([*lines, feedback_note(feedback)])


def _adjustment(feedback: StoredFeedback | None) -> float:
    if feedback is None:
        return 0.0
    if feedback.verdict is FeedbackVerdict.RIGHT:
        return CONFIRMED_BONUS
    # Corrected: its text now carries the right category, as trustworthy as a confirmed one; wrong without a
    # correction: its root cause is known to mislead.
    return CONFIRMED_BONUS if feedback.category is not None else -CONFIRMED_BONUS


def rerank_similar(
    hits: Sequence[KnowledgeHit], latest: Mapping[str, StoredFeedback], k: int | None = None
) -> list[KnowledgeHit]:
    """Similar incidents re-ranked by their latest verdicts (`latest`: incident id -> its latest feedback): score
    adjusted by `CONFIRMED_BONUS`, a stable sort (equal scores keep the retrieval order), a corrected incident's
    text showing the corrected category and component. Runbook hits pass through unchanged."""
    ranked: list[tuple[float, int, KnowledgeHit]] = []
    for position, hit in enumerate(hits):
        feedback = latest.get(hit.source) if hit.collection == "incidents" else None
        if feedback is not None:
            hit = hit.model_copy(update={"text": _corrected_text(hit.text, feedback)})
        ranked.append((hit.score + _adjustment(feedback), position, hit))
    ranked.sort(key=lambda entry: (-entry[0], entry[1]))
    out = [hit for _, _, hit in ranked]
    return out if k is None else out[:k]
