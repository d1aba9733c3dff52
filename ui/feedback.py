"""Feedback on an incident's diagnosis, under the diagnosis on the incident page: right or wrong, and when wrong
the right category and component, with a note. Stored through `Store.record_feedback` (vigil.feedback says how
it is used: classifier training and the ranking of similar incidents); earlier verdicts are listed below it.
Responders and admins give feedback; viewers see the list only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ui.console import format_utc, label
from vigil.analysis.models import Category
from vigil.feedback import DiagnosisFeedback, FeedbackVerdict, StoredFeedback
from vigil.rca.models import RootCauseAnalysis
from vigil.store.database import STORE_UNAVAILABLE

if TYPE_CHECKING:
    from ui.context import ConsoleContext
    from ui.session import SignedInUser

VERDICTS = {FeedbackVerdict.RIGHT: "Right", FeedbackVerdict.WRONG: "Wrong"}


def feedback_from_form(
    incident_id: str,
    actor: str,
    verdict: FeedbackVerdict | None,
    category: Category | None,
    component: str | None,
    note: str | None,
) -> DiagnosisFeedback:
    """The verdict as stored; ValueError says what is missing. A correction (category, component) is kept only
    with `wrong`: with `right` the diagnosed ones are what the verdict confirms."""
    if verdict is None:
        raise ValueError("Choose right or wrong.")
    wrong = verdict is FeedbackVerdict.WRONG
    try:
        return DiagnosisFeedback(
            incident_id=incident_id,
            verdict=verdict,
            category=category if wrong else None,
            component=(component or None) if wrong else None,
            note=(note or "").strip(),
            actor=actor,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def feedback_line(stored: StoredFeedback) -> str:
    judged = stored.diagnosed_category or "no stored diagnosis"
    if stored.diagnosed_component:
        judged += f" / {stored.diagnosed_component}"
    text = f"{format_utc(stored.at)} UTC · {stored.actor}: {stored.verdict.value} (judged {judged})"
    if stored.verdict is FeedbackVerdict.WRONG and (stored.category or stored.component):
        right = " / ".join(p for p in (stored.category and label(stored.category), stored.component) if p)
        text += f"; right: {right}"
    return text + (f" — {stored.note}" if stored.note else "")


class FeedbackPanel:
    def __init__(
        self, context: ConsoleContext, incident_id: str, user: SignedInUser, diagnosis: RootCauseAnalysis | None
    ) -> None:
        self.context = context
        self.incident_id = incident_id
        self.user = user
        self.diagnosis = diagnosis
        self._list: Any = None

    def build(self) -> None:
        from nicegui import ui

        if self.diagnosis is None:
            ui.label("Feedback opens once there is a diagnosis.").classes("text-grey-7")
            return
        if self.context.store is None:
            ui.label("The store is not reachable yet: feedback cannot be stored or listed.").classes("text-grey-7")
            return
        if self.user.may_act:
            self._form()
        self._list = ui.column().classes("w-full gap-0")
        self._list.props["data-testid"] = "feedback-list"

    def _form(self) -> None:
        from nicegui import ui

        with ui.column().classes("w-full gap-1") as form:
            form.props["data-testid"] = "feedback-form"
            verdict = ui.radio(VERDICTS).props("inline").mark("feedback-verdict")
            with ui.row().classes("w-full gap-2") as correction:
                category = (
                    ui.select({c: label(c) for c in Category}, label="Right category", clearable=True)
                    .classes("w-48")
                    .mark("feedback-category")
                )
                component = ui.input("Right component").classes("w-64").mark("feedback-component")
            correction.bind_visibility_from(verdict, "value", backward=lambda v: v == FeedbackVerdict.WRONG)
            note = ui.input("Note (optional)").classes("w-full").mark("feedback-note")
            send = ui.button("Send feedback").props("outline no-caps").mark("feedback-submit")
            send.props["data-testid"] = "feedback-submit"

        async def submit() -> None:
            store = self.context.store
            try:
                feedback = feedback_from_form(
                    self.incident_id, self.user.actor, verdict.value, category.value, component.value, note.value
                )
            except ValueError as exc:
                ui.notify(str(exc), type="warning")
                return
            if store is None:
                ui.notify("The store is not reachable: feedback not stored.", type="negative")
                return
            send.disable()
            try:
                await store.record_feedback(feedback)
            except STORE_UNAVAILABLE as exc:
                ui.notify(f"Feedback not stored: {exc!s}"[:300], type="negative")
                return
            finally:
                send.enable()
            ui.notify("Feedback stored: thank you.", type="positive")
            verdict.value, category.value, component.value, note.value = None, None, "", ""
            await self.load()

        send.on_click(submit)

    async def load(self) -> None:
        """List the verdicts given so far."""
        from nicegui import ui

        store = self.context.store
        if self._list is None or store is None:
            return
        problem: str | None = None
        try:
            given = await store.feedback(self.incident_id)
        except STORE_UNAVAILABLE as exc:
            given, problem = [], f"Earlier feedback not read: {exc!s}"[:300]
        self._list.clear()
        with self._list:
            if problem:
                ui.label(problem).classes("text-negative")
            ui.label(f"Feedback given ({len(given)})").classes("text-subtitle2")
            for stored in given:
                ui.label(feedback_line(stored)).classes("text-body2")
