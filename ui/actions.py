"""What a responder does on the incident page: acknowledge, approve or reject the pending proposal, propose a
catalogue action, resolve. Every one is the same workflow Update as the REST API and the Slack buttons run
(`api.incident_updates.run_update`), with the signed-in user as `by`, and an update id of its own per click, so
that a click sent twice is one Update. The workflow decides: what it refuses (a stale proposal, a closed
incident, an acknowledged one) comes back as a notification with its reason, and the page reloads the state.

The request builders are pure and raise `ActionInputError` for what the user can fix before anything is sent (a
rejection without a reason, a parameter outside its schema). Dialogs are built once per page, outside the
sections that the live refresh rebuilds, so a refresh never closes a dialog or loses what was typed in it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from api.incident_updates import IncidentNotFound, TemporalUnavailable, UpdateFailed, UpdateRefused, run_update
from ui.console import TEMPORAL_ERRORS, format_utc, temporal_reason
from vigil.integrations.models import AcknowledgeRequest
from vigil.models import (
    ApprovalOutcome,
    ApprovalRequest,
    Decision,
    IncidentState,
    IncidentStatus,
    PendingApproval,
    RemediationProposal,
    ResolveRequest,
)
from vigil.remediation.actions import Action
from vigil.remediation.catalogue import Catalogue
from vigil.remediation.parameters import Parameter, coerce

if TYPE_CHECKING:
    from nicegui import ui as ui_module

    from ui.context import ConsoleContext
    from ui.session import SignedInUser

FINAL = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)
ACTION_ERRORS: tuple[type[Exception], ...] = (UpdateFailed, *TEMPORAL_ERRORS)
"""An Update not done: refused, no such incident, Temporal unavailable or unreachable."""
REASON_REQUIRED = "A reason is required to reject a proposal: say why, so the next proposal can do better."


class ActionInputError(ValueError):
    """Input the user can fix before anything is sent; the message says what."""


# --- pure: requests, ids, messages -------------------------------------------------------------------------


def new_update_id(kind: str, incident_id: str) -> str:
    """One id per click: Temporal runs an Update with a given id once, so a click delivered twice decides once."""
    return f"console-{kind}-{incident_id}-{uuid.uuid4().hex}"


def _validated(model: type[BaseModel], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ActionInputError(f"{where}: {first['msg']}") from None


def acknowledge_request(actor: str, note: str = "") -> AcknowledgeRequest:
    request: AcknowledgeRequest = _validated(AcknowledgeRequest, {"by": actor, "note": note})
    return request


def approval_request(actor: str, decision: Decision, *, proposal_id: int, reason: str = "") -> ApprovalRequest:
    """Approve or reject the proposal the page showed (`proposal_id`): a newer one pending makes the workflow
    refuse it. A rejection needs a reason."""
    if decision is Decision.REJECT and not reason.strip():
        raise ActionInputError(REASON_REQUIRED)
    request: ApprovalRequest = _validated(
        ApprovalRequest, {"decision": decision, "by": actor, "reason": reason, "proposal_id": proposal_id}
    )
    return request


def resolve_request(actor: str, reason: str = "") -> ResolveRequest:
    request: ResolveRequest = _validated(ResolveRequest, {"by": actor, "reason": reason})
    return request


def parameter_hint(parameter: Parameter) -> str:
    """What an empty field means: the value the worker binds at run time (the alert label, the diagnosed
    component or the default)."""
    if parameter.source is not None:
        fallback = f" (else {parameter.default})" if parameter.default is not None else ""
        return f"blank: from {parameter.source}{fallback}"
    return f"blank: default {parameter.default}" if parameter.default is not None else "required"


def proposal_request(
    actor: str, action: Action, values: Mapping[str, Any], reason: str = "", evidence: list[str] | None = None
) -> RemediationProposal:
    """A proposal of a catalogue action. Parameters left blank are bound by the worker from their source, as
    for Vigil's own proposals; the ones given are checked against their schema here (the worker checks again)."""
    params: dict[str, str] = {}
    problems: list[str] = []
    for name, raw in values.items():
        parameter = action.parameters.get(name)
        if parameter is None:
            problems.append(f"{name}: not a parameter of {action.name}")
            continue
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        try:
            params[name] = coerce(parameter, raw.strip() if isinstance(raw, str) else raw)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ActionInputError("; ".join(problems))
    proposal: RemediationProposal = _validated(
        RemediationProposal,
        {"action": action.name, "params": params, "proposed_by": actor, "reason": reason, "evidence": evidence or []},
    )
    return proposal


def failure_message(what: str, error: BaseException) -> str:
    if isinstance(error, UpdateRefused):
        return f"{what} refused by the incident: {error}"
    if isinstance(error, IncidentNotFound):
        return f"{what} not done: {error}"
    if isinstance(error, TemporalUnavailable):
        return f"{what} not done, Temporal is unavailable: {error}"
    return f"{what} not done, Temporal is unreachable: {temporal_reason(error)}"


def pending_lines(pending: PendingApproval) -> list[tuple[str, str]]:
    """(label, text) of a pending proposal, for its panel. All text: params and reasons may come from anyone."""
    proposal = pending.proposal
    lines = [
        ("Action", proposal.action),
        ("Parameters", ", ".join(f"{k}={v}" for k, v in sorted(proposal.params.items())) or "none"),
        ("Proposed by", f"{proposal.proposed_by} at {format_utc(pending.requested_at)} UTC"),
    ]
    if proposal.reason:
        lines.append(("Why", proposal.reason))
    if pending.policy_rule or pending.policy_reason:
        rule = f"rule {pending.policy_rule}: " if pending.policy_rule else ""
        lines.append(("Policy", f"{rule}{pending.policy_reason}".strip()))
    lines.append(("Dry run", "yes: the action would only say what it would do" if pending.dry_run else "no"))
    if pending.escalation_level:
        lines.append(("Escalated", f"level {pending.escalation_level}"))
    if proposal.evidence:
        lines.append(("Evidence", ", ".join(proposal.evidence)))
    return lines


# --- page ---------------------------------------------------------------------------------------------------

Refresh = Callable[[], Awaitable[None]]


@dataclass
class IncidentActions:
    """The action buttons, the pending proposal's panel and the dialogs of one incident page."""

    context: ConsoleContext
    incident_id: str
    user: SignedInUser
    refresh: Refresh
    catalogue: Catalogue | None = None
    catalogue_error: str | None = None
    state: IncidentState | None = None
    _dialogs: dict[str, Any] = field(default_factory=dict)

    async def run(self, what: str, kind: str, update: str, arg: BaseModel, result_type: type[BaseModel]) -> bool:
        """Run one Update; a notification says how it went; the page reloads the state either way."""
        from nicegui import ui

        try:
            client = await self.context.source.client()
            await run_update(
                client, self.incident_id, update, arg, result_type, update_id=new_update_id(kind, self.incident_id)
            )
        except ACTION_ERRORS as error:
            ui.notify(failure_message(what, error), type="negative", multi_line=True, timeout=10_000)
            await self.refresh()
            return False
        ui.notify(f"{what}: done", type="positive")
        await self.refresh()
        return True

    @staticmethod
    def _guarded(
        button: ui_module.button, work: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[None] | None]:
        """A click handler that disables the button at once (before its Update is even sent) and enables it when
        the Update is done: a double click starts one Update, not two."""

        async def run() -> None:
            try:
                await work()
            finally:
                if not button.is_deleted:
                    button.enable()

        def click() -> Awaitable[None] | None:
            if not button.enabled:
                return None
            button.disable()
            return run()

        return click

    # --- dialogs, built once per page -------------------------------------------------------------------

    def build_dialogs(self) -> None:
        from nicegui import ui

        with ui.dialog() as ack, ui.card().classes("w-96"):
            ui.label("Acknowledge: you are on it").classes("text-h6")
            ack_note = ui.input("Note (optional)").classes("w-full").mark("ack-note")
            with ui.row():
                ack_send = ui.button("Acknowledge").mark("ack-submit")
                ui.button("Cancel", on_click=ack.close).props("flat")

        async def acknowledge() -> None:
            request = self._request(lambda: acknowledge_request(self.user.actor, ack_note.value or ""))
            if request is not None and await self.run("Acknowledge", "ack", "acknowledge", request, IncidentState):
                ack_note.value = ""
                ack.close()

        ack_send.on_click(self._guarded(ack_send, acknowledge))
        ack_send.props["data-testid"] = "ack-submit"

        with ui.dialog() as reject, ui.card().classes("w-96"):
            reject_title = ui.label("Reject").classes("text-h6")
            reject_reason = ui.textarea("Reason (required)").classes("w-full").mark("reject-reason")
            with ui.row():
                reject_send = ui.button("Reject", color="negative").mark("reject-submit")
                ui.button("Cancel", on_click=reject.close).props("flat")
        reject_send.props["data-testid"] = "reject-submit"

        async def send_reject() -> None:
            proposal_id = self._dialogs["reject_proposal_id"]
            request = self._request(
                lambda: approval_request(
                    self.user.actor, Decision.REJECT, proposal_id=proposal_id, reason=reject_reason.value or ""
                )
            )
            if request is not None and await self.run("Reject", "reject", "approval", request, ApprovalOutcome):
                reject_reason.value = ""
                reject.close()

        reject_send.on_click(self._guarded(reject_send, send_reject))

        with ui.dialog() as resolve, ui.card().classes("w-96"):
            ui.label("Resolve the incident by hand").classes("text-h6")
            resolve_reason = ui.textarea("Reason").classes("w-full").mark("resolve-reason")
            with ui.row():
                resolve_send = ui.button("Resolve", color="positive").mark("resolve-submit")
                ui.button("Cancel", on_click=resolve.close).props("flat")
        resolve_send.props["data-testid"] = "resolve-submit"

        async def send_resolve() -> None:
            request = self._request(lambda: resolve_request(self.user.actor, resolve_reason.value or ""))
            if request is not None and await self.run("Resolve", "resolve", "resolve", request, IncidentState):
                resolve_reason.value = ""
                resolve.close()

        resolve_send.on_click(self._guarded(resolve_send, send_resolve))

        self._dialogs.update(ack=ack, reject=reject, reject_title=reject_title, resolve=resolve)
        self._build_propose_dialog()

    def _build_propose_dialog(self) -> None:
        from nicegui import ui

        catalogue = self.catalogue
        if catalogue is None or not catalogue.actions:
            return
        fields: dict[str, Any] = {}
        with ui.dialog() as propose, ui.card().classes("w-[36rem]"):
            ui.label("Propose a catalogue action").classes("text-h6")
            options = {name: f"{name}: {action.description}" for name, action in sorted(catalogue.actions.items())}
            choice = ui.select(options, label="Action").classes("w-full").mark("propose-action")
            choice.props["data-testid"] = "propose-action"
            params_box = ui.column().classes("w-full gap-0")
            reason = ui.input("Why (optional)").classes("w-full").mark("propose-reason")
            with ui.row():
                send = ui.button("Propose").mark("propose-submit")
                ui.button("Cancel", on_click=propose.close).props("flat")
        send.props["data-testid"] = "propose-submit"

        def show_parameters() -> None:
            params_box.clear()
            fields.clear()
            if choice.value is None:
                return
            action = catalogue.actions[choice.value]
            with params_box:
                ui.label(f"Runs with {action.executor.type}; verified by its own check after it ran.").classes(
                    "text-caption text-grey-7"
                )
                for name, parameter in action.parameters.items():
                    hint = parameter_hint(parameter)
                    if parameter.enum is not None:
                        fields[name] = ui.select(
                            {value: str(value) for value in parameter.enum}, label=f"{name} ({hint})", clearable=True
                        ).classes("w-full")
                    else:
                        fields[name] = ui.input(f"{name} ({hint})").classes("w-full")
                    fields[name].mark(f"param-{name}")
                    if parameter.description:
                        fields[name].tooltip(parameter.description)

        choice.on_value_change(show_parameters)

        async def send_proposal() -> None:
            if choice.value is None:
                ui.notify("Choose an action to propose.", type="warning")
                return
            action = catalogue.actions[choice.value]
            values = {name: element.value for name, element in fields.items()}
            request = self._request(lambda: proposal_request(self.user.actor, action, values, reason.value or ""))
            if request is not None and await self.run(
                f"Propose {action.name}", "propose", "propose_remediation", request, PendingApproval
            ):
                reason.value = ""
                propose.close()

        send.on_click(self._guarded(send, send_proposal))
        self._dialogs["propose"] = propose

    def _request(self, build: Callable[[], BaseModel]) -> Any:
        from nicegui import ui

        try:
            return build()
        except ActionInputError as exc:
            ui.notify(str(exc), type="warning", multi_line=True)
            return None

    # --- sections the live refresh rebuilds --------------------------------------------------------------

    def render_bar(self, state: IncidentState) -> None:
        """Acknowledge, Propose and Resolve, for responders; a viewer sees who acknowledged, nothing to press."""
        from nicegui import ui

        self.state = state
        with ui.row().classes("items-center gap-2 q-my-sm"):
            acknowledged = state.integrations.acknowledged_by
            if acknowledged:
                ui.label(f"Acknowledged by {acknowledged}").classes("text-caption text-grey-8")
            if not self.user.may_act:
                ui.label("Signed in as a viewer: actions need a responder.").classes("text-caption text-grey-7")
                return
            if not acknowledged:
                self._button("Acknowledge", "ack", lambda: self._dialogs["ack"].open(), icon="front_hand")
            if self._dialogs.get("propose") is not None:
                self._button("Propose action", "propose", lambda: self._dialogs["propose"].open(), icon="build")
            elif self.catalogue_error:
                ui.label(f"Propose: the action catalogue does not load ({self.catalogue_error})").classes(
                    "text-caption text-negative"
                )
            else:
                ui.label("Propose: the action catalogue has no actions").classes("text-caption text-grey-7")
            self._button("Resolve", "resolve", lambda: self._dialogs["resolve"].open(), icon="check_circle")
            if state.status in FINAL:
                ui.label(f"The incident is {state.status.value}: the workflow refuses further actions.").classes(
                    "text-caption text-grey-7"
                )

    def _button(self, text: str, testid: str, on_click: Callable[[], object], *, icon: str) -> ui_module.button:
        from nicegui import ui

        button = ui.button(text, icon=icon, on_click=on_click).props("outline no-caps").mark(testid)
        button.props["data-testid"] = testid
        return button

    def render_pending(self, pending: PendingApproval | None) -> None:
        """The proposal awaiting approval, with Approve / Reject beside it (responders only)."""
        from nicegui import ui

        if pending is None:
            return
        with ui.card().classes("w-full bg-amber-1 q-my-sm").mark("pending-proposal") as card:
            card.props["data-testid"] = "pending-proposal"
            ui.label(f"Awaiting approval: {pending.proposal.action} (proposal {pending.proposal_id})").classes(
                "text-subtitle1 text-weight-bold"
            )
            for name, text in pending_lines(pending):
                with ui.row().classes("items-baseline gap-2 no-wrap"):
                    ui.label(f"{name}:").classes("text-caption text-weight-bold")
                    ui.label(text).classes("text-body2")
            if not self.user.may_act:
                return
            with ui.row().classes("gap-2"):
                approve = ui.button("Approve", icon="thumb_up", color="positive").mark("approve")
                approve.props["data-testid"] = "approve"
                reject = ui.button("Reject", icon="thumb_down", color="negative").props("outline").mark("reject")
                reject.props["data-testid"] = "reject"

        proposal_id = pending.proposal_id

        async def send_approve() -> None:
            request = self._request(
                lambda: approval_request(self.user.actor, Decision.APPROVE, proposal_id=proposal_id)
            )
            if request is not None:
                await self.run(f"Approve {pending.proposal.action}", "approve", "approval", request, ApprovalOutcome)

        def open_reject() -> None:
            self._dialogs["reject_proposal_id"] = proposal_id
            self._dialogs["reject_title"].set_text(f"Reject {pending.proposal.action} (proposal {proposal_id})")
            self._dialogs["reject"].open()

        approve.on_click(self._guarded(approve, send_approve))
        reject.on_click(open_reject)
