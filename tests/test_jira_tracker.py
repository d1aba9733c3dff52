"""The Jira ticket tracker with the real `jira` library against a fake Jira over HTTP: one ticket per incident
even across a crash, assignment from the owners file, comments told once, transitions on merge and close, and
Jira's failures as the errors the activity retries (or not). Also the service owners file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.jira_api import FakeJira
from tests.support import free_port
from vigil.analysis.models import ChainHop
from vigil.integrations.base import IntegrationConfigError, IntegrationRejected, IntegrationUnavailable
from vigil.integrations.jira_tracker import JiraTracker
from vigil.integrations.models import BriefEvent, IncidentBrief, PullRequestRef, TicketInput, TicketState
from vigil.integrations.owners import ServiceOwner, ServiceOwners
from vigil.rca.models import EvidenceItem
from vigil.settings import Settings
from vigil.severity import Severity

OPENED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OWNERS = ServiceOwners(services={"checkout": ServiceOwner(jira_assignee="alice", github_repo="acme/shop")})


def settings_for(fake: FakeJira, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jira_url": fake.url,
        "jira_user": fake.user,
        "jira_api_token": fake.token,
        "jira_project": fake.project,
        "temporal_ui_url": "http://temporal.example:8233",
        "console_url": "http://vigil.example",
    }
    values.update(overrides)
    return Settings.model_validate(values)


def brief(**overrides: Any) -> IncidentBrief:
    values: dict[str, Any] = {
        "incident_id": "incident-checkout-5xx-1",
        "workflow_id": "incident-checkout-5xx",
        "title": "HighErrorRate on checkout",
        "status": "monitoring",
        "severity": Severity.CRITICAL,
        "service": "checkout",
        "category": "database",
        "confidence": 0.82,
        "root_cause": "Connection pool exhausted after deploy v2",
        "component": "checkout-db",
        "chain": [
            ChainHop(component="checkout", relation="alert fired", evidence=["alert:HighErrorRate"]),
            ChainHop(component="checkout-db", relation="pool exhausted [x|http://evil]", evidence=["relation:c->db"]),
        ],
        "evidence": [EvidenceItem(id="E1", kind="log", title="FATAL: too many connections [see |http://evil]")],
        "runbooks": ["https://runbooks.example/db-pool"],
        "opened_at": OPENED,
    }
    values.update(overrides)
    return IncidentBrief.model_validate(values)


def event(seq: int, message: str) -> BriefEvent:
    return BriefEvent(seq=seq, at=OPENED + timedelta(seconds=seq), kind="note", message=message, actor="vigil")


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    with FakeJira() as fake:
        yield fake


@pytest.fixture
async def tracker(jira: FakeJira) -> AsyncIterator[JiraTracker]:
    tracker = JiraTracker(settings_for(jira), OWNERS)
    try:
        yield tracker
    finally:
        await tracker.close()


async def sync(tracker: JiraTracker, state: TicketState | None, events: list[BriefEvent], **b: Any) -> TicketState:
    result = await tracker.sync(TicketInput(brief=brief(**b), events=events, state=state))
    assert result is not None
    return result


def bodies(fake: FakeJira, key: str) -> list[str]:
    return [str(comment["body"]) for comment in fake.issue(key)["comments"]]


async def test_one_ticket_even_when_the_worker_died_before_answering(jira: FakeJira, tracker: JiraTracker) -> None:
    events = [event(1, "alert HighErrorRate fired"), event(2, "diagnosis: database")]
    first = await sync(tracker, None, events)
    assert first.key == "OPS-1"
    assert first.url == f"{jira.url}/browse/OPS-1"
    assert (first.told_seq, first.assignee) == (2, "alice")
    issue = jira.issue("OPS-1")
    assert issue["labels"] == ["vigil", "vigil-incident-checkout-5xx-1"]
    assert issue["summary"] == "[critical] HighErrorRate on checkout (checkout)"
    assert issue["issuetype"] == "Bug"
    assert issue["assignee"] == "alice"
    assert not any(line.startswith("PUT") for line in jira.requests)  # assigned in the create request itself
    description = issue["description"]
    assert "Connection pool exhausted after deploy v2" in description
    assert "checkout\\-db" not in description
    assert "checkout-db" in description
    assert "database (confidence 82%)" in description
    assert "too many connections \\[see \\|http://evil\\]" in description  # log text cannot become a link
    assert "* *checkout-db*: pool exhausted \\[x\\|http://evil\\] (relation:c->db)" in description
    assert "https://runbooks.example/db-pool" in description
    assert "[Vigil console|http://vigil.example/incidents/incident-checkout-5xx-1]" in description
    assert "http://temporal.example:8233/namespaces/default/workflows/incident-checkout-5xx" in description
    assert len(bodies(jira, "OPS-1")) == 1

    # The worker died after Jira created and commented the ticket: the retry (same input, no state) finds it.
    again = await sync(tracker, None, events)
    assert again == first
    assert list(jira.issues) == ["OPS-1"]
    assert len(bodies(jira, "OPS-1")) == 1  # the timeline comment was already there
    assert jira.requests.count("POST /rest/api/2/issue") == 1


async def test_events_are_commented_once_each(jira: FakeJira, tracker: JiraTracker) -> None:
    state = await sync(tracker, None, [event(1, "alert fired")])
    state = await sync(tracker, state, [event(1, "alert fired"), event(2, "restart proposed"), event(3, "approved")])
    assert state.told_seq == 3
    comments = bodies(jira, state.key)
    assert len(comments) == 2
    assert "alert fired" in comments[0]
    assert "restart proposed" in comments[1]
    assert "approved" in comments[1]
    assert "alert fired" not in comments[1]
    unchanged = await sync(tracker, state, [event(3, "approved")])
    assert unchanged == state
    assert len(bodies(jira, state.key)) == 2


async def test_merged_pull_request_moves_the_ticket_and_close_takes_done_once(
    jira: FakeJira, tracker: JiraTracker
) -> None:
    pr = PullRequestRef(
        repository="acme/shop", number=7, title="Raise pool size", url="https://github.example/acme/shop/pull/7"
    )
    state = await sync(tracker, None, [])
    state = await sync(tracker, state, [], pull_requests=[pr])
    assert state.merged_seen == 1
    assert jira.issue(state.key)["transitions"] == ["In Review"]
    assert jira.issue(state.key)["status"] == "In Review"
    assert any("acme/shop#7" in body and "Raise pool size" in body for body in bodies(jira, state.key))

    state = await sync(tracker, state, [], pull_requests=[pr])  # nothing new merged
    assert jira.issue(state.key)["transitions"] == ["In Review"]

    closed = await sync(tracker, state, [], pull_requests=[pr], status="closed", closed_at=OPENED + timedelta(hours=1))
    assert closed.done
    assert jira.issue(state.key)["transitions"] == ["In Review", "Done"]
    assert jira.issue(state.key)["status"] == "Done"
    lost = await sync(tracker, None, [], pull_requests=[pr], status="closed")  # a retry that lost the state
    assert lost.key == state.key
    assert lost.done
    assert jira.issue(state.key)["transitions"] == ["In Review", "Done"]
    assert not any("did not move" in body for body in bodies(jira, state.key))
    assert sum("acme/shop#7" in body for body in bodies(jira, state.key)) == 1
    again = await sync(tracker, closed, [event(9, "postmortem written")], status="closed", pull_requests=[pr])
    assert again.done
    assert again.told_seq == 9
    assert jira.issue(state.key)["transitions"] == ["In Review", "Done"]


async def test_transitions_match_any_case_and_a_missing_one_is_a_comment() -> None:
    with FakeJira(transitions=("Start work", "DONE")) as fake:
        tracker = JiraTracker(settings_for(fake), OWNERS)
        try:
            pr = PullRequestRef(repository="acme/shop", number=1, title="fix", url="https://github.example/p/1")
            state = await sync(tracker, None, [], pull_requests=[pr])
            assert state.merged_seen == 1
            assert fake.issue(state.key)["transitions"] == []
            assert any("offers no such transition" in body and "In Review" in body for body in bodies(fake, state.key))
            state = await sync(tracker, state, [], status="closed")
            assert state.done
            assert fake.issue(state.key)["transitions"] == ["DONE"]
        finally:
            await tracker.close()


async def test_no_ticket_below_the_minimum_severity_unless_code_related(jira: FakeJira, tracker: JiraTracker) -> None:
    warning = TicketInput(brief=brief(severity=Severity.WARNING), events=[event(1, "fired")])
    assert await tracker.sync(warning) is None
    assert jira.requests == []
    code = await tracker.sync(TicketInput(brief=brief(severity=Severity.WARNING, code_related=True)))
    assert code is not None
    assert len(jira.issues) == 1

    lenient = JiraTracker(settings_for(jira, jira_min_severity="high"), OWNERS)
    try:
        high = await lenient.sync(TicketInput(brief=brief(incident_id="incident-other-1", severity=Severity.HIGH)))
        assert high is not None
        assert await lenient.sync(TicketInput(brief=brief(severity=Severity.INFO))) is None
    finally:
        await lenient.close()
    assert len(jira.issues) == 2


async def test_a_refused_assignment_is_noted_on_the_ticket(jira: FakeJira) -> None:
    owners = ServiceOwners(services={"checkout": ServiceOwner(jira_assignee="nobody-here")})
    tracker = JiraTracker(settings_for(jira), owners)
    try:
        state = await sync(tracker, None, [])
    finally:
        await tracker.close()
    assert state.assignee is None
    assert jira.issue(state.key)["assignee"] is None
    assert any("could not assign this ticket to nobody-here" in body for body in bodies(jira, state.key))


async def test_an_assignee_jira_refuses_leaves_the_ticket_unassigned_and_noted(
    jira: FakeJira, tracker: JiraTracker
) -> None:
    refusal = {"errorMessages": [], "errors": {"assignee": "User 'alice' cannot be assigned issues."}}
    jira.fail("POST /rest/api/2/issue", 400, body=refusal)
    state = await sync(tracker, None, [])
    assert state.assignee is None
    assert list(jira.issues) == [state.key]
    assert jira.issue(state.key)["assignee"] is None
    assert any("could not assign this ticket to alice" in body for body in bodies(jira, state.key))


async def test_a_found_unassigned_ticket_is_given_to_the_owner(jira: FakeJira) -> None:
    nobody = JiraTracker(settings_for(jira), ServiceOwners())
    try:
        first = await sync(nobody, None, [])
    finally:
        await nobody.close()
    assert first.assignee is None
    tracker = JiraTracker(settings_for(jira), OWNERS)  # the owners file gained the service; the state was lost
    try:
        found = await sync(tracker, None, [])
    finally:
        await tracker.close()
    assert (found.key, found.assignee) == (first.key, "alice")
    assert jira.issue(first.key)["assignee"] == "alice"
    assert len(jira.issues) == 1


async def test_service_without_owner_gets_an_unassigned_ticket(jira: FakeJira, tracker: JiraTracker) -> None:
    state = await sync(tracker, None, [], service="search", component=None)
    assert state.assignee is None
    assert jira.issue(state.key)["summary"].endswith("(search)")
    assert not any("PUT" in line for line in jira.requests)


async def test_jira_cloud_searches_with_jql_and_assigns_by_account_id() -> None:
    with FakeJira(deployment="Cloud", users=("alice@example.com",)) as fake:
        owners = ServiceOwners(services={"checkout": ServiceOwner(jira_assignee="alice@example.com")})
        tracker = JiraTracker(settings_for(fake), owners)
        try:
            first = await sync(tracker, None, [event(1, "fired")])
            again = await sync(tracker, None, [event(1, "fired")])
        finally:
            await tracker.close()
    assert again == first
    assert first.assignee == "alice@example.com"
    assert fake.issue(first.key)["assignee"] == "alice@example.com"
    assert fake.requests.count("GET /rest/api/2/search/jql") == 2
    assert "GET /rest/api/2/search" not in fake.requests
    assert len(fake.issues) == 1


async def test_rate_limit_is_unavailable_after_retry_after(jira: FakeJira, tracker: JiraTracker) -> None:
    jira.fail("POST /rest/api/2/issue", 429, retry_after=17)
    with pytest.raises(IntegrationUnavailable) as caught:
        await sync(tracker, None, [])
    assert caught.value.retry_after == 17
    assert jira.issues == {}
    state = await sync(tracker, None, [])  # Temporal's retry
    assert list(jira.issues) == [state.key]


async def test_server_errors_and_an_unreachable_jira_are_unavailable(jira: FakeJira, tracker: JiraTracker) -> None:
    jira.fail("GET /rest/api/2/search", 503)
    with pytest.raises(IntegrationUnavailable, match="HTTP 503") as caught:
        await sync(tracker, None, [])
    assert caught.value.retry_after is None
    state = await sync(tracker, None, [])
    jira.fail("POST /rest/api/2/issue/OPS-1/comment", 500)
    with pytest.raises(IntegrationUnavailable, match="HTTP 500"):
        await sync(tracker, state, [event(1, "fired")])
    assert await sync(tracker, state, [event(1, "fired")]) == state.model_copy(update={"told_seq": 1})

    nothing = f"http://127.0.0.1:{free_port()}"
    unreachable = JiraTracker(settings_for(jira, jira_url=nothing), OWNERS)
    try:
        with pytest.raises(IntegrationUnavailable, match="unreachable"):
            await sync(unreachable, None, [])
        with pytest.raises(IntegrationUnavailable):
            await unreachable.check()
    finally:
        await unreachable.close()


async def test_refusals_are_rejected_with_jiras_message_and_no_secret(jira: FakeJira) -> None:
    tracker = JiraTracker(settings_for(jira, jira_issue_type="Epic"), OWNERS)
    try:
        with pytest.raises(IntegrationRejected) as caught:
            await sync(tracker, None, [])
    finally:
        await tracker.close()
    assert "HTTP 400" in str(caught.value)
    assert "Specify a valid issue type" in str(caught.value)
    assert jira.token not in str(caught.value)

    wrong = JiraTracker(settings_for(jira, jira_api_token="not-the-token"), OWNERS)
    try:
        with pytest.raises(IntegrationRejected, match="HTTP 401") as refused:
            await sync(wrong, None, [])
    finally:
        await wrong.close()
    assert "not-the-token" not in str(refused.value)


async def test_check_names_the_user_and_refuses_bad_settings(jira: FakeJira, tracker: JiraTracker) -> None:
    assert await tracker.check() == f"Jira: vigil@example.com on {jira.url}, project OPS"

    bad_token = JiraTracker(settings_for(jira, jira_api_token="wrong-token"), OWNERS)
    unknown_project = JiraTracker(settings_for(jira, jira_project="NOPE"), OWNERS)
    try:
        with pytest.raises(IntegrationConfigError, match=r"refused the credentials of vigil@example\.com") as caught:
            await bad_token.check()
        assert "wrong-token" not in str(caught.value)
        with pytest.raises(IntegrationConfigError, match="project NOPE does not exist"):
            await unknown_project.check()
    finally:
        await bad_token.close()
        await unknown_project.close()


def test_incomplete_settings_are_a_config_error() -> None:
    with pytest.raises(IntegrationConfigError, match="VIGIL_JIRA_PROJECT"):
        JiraTracker(Settings.model_validate({"jira_url": "http://jira.example", "jira_user": "u"}), OWNERS)


# -- the service owners file ---------------------------------------------------------------------------------------


def test_owners_file_maps_services_to_assignee_and_repository(tmp_path: Path) -> None:
    path = tmp_path / "owners.yml"
    path.write_text("checkout:\n  jira_assignee: alice\n  github_repo: acme/shop\npayments:\n  github_repo: acme/pay\n")
    owners = ServiceOwners.load(path)
    assert (owners.assignee("checkout"), owners.repository("checkout")) == ("alice", "acme/shop")
    assert (owners.assignee("payments"), owners.repository("payments")) == (None, "acme/pay")
    assert (owners.assignee("unknown"), owners.repository(None)) == (None, None)
    assert ServiceOwners.load(None) == ServiceOwners()
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert ServiceOwners.load(empty).services == {}


def test_owners_file_problems_are_all_listed_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "owners.yml"
    path.write_text(
        "checkout:\n  jira_asignee: alice\n  github_repo: not a repo\npayments: [1, 2]\nsearch:\n  github_repo: a/b\n"
    )
    with pytest.raises(IntegrationConfigError) as caught:
        ServiceOwners.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "checkout.jira_asignee: unknown key" in message
    assert "checkout.github_repo: must be a GitHub repository as owner/name" in message
    assert "payments: expected a mapping" in message
    assert "search" not in message

    for text, expected in (
        ("checkout: [unclosed\n", "invalid YAML at line"),
        ("- a\n- b\n", "expected a mapping of service name"),
    ):
        path.write_text(text)
        with pytest.raises(IntegrationConfigError, match=expected):
            ServiceOwners.load(path)
    with pytest.raises(IntegrationConfigError, match="cannot read"):
        ServiceOwners.load(tmp_path / "missing.yml")
