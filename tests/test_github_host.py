"""The GitHub code host with the real PyGithub against a fake GitHub over HTTP: one issue per code-related incident
even across a crash, the commits of the suspect deploy (from the real store's deploy events) listed once, events
commented once, a close comment that leaves the issue open, and GitHub's failures as the activity's errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes.github_api import FakeGitHub
from tests.support import free_port
from vigil.integrations.base import IntegrationConfigError, IntegrationRejected, IntegrationUnavailable
from vigil.integrations.github_host import DeployLookup, GitHubCodeHost, store_deploy_lookup
from vigil.integrations.models import BriefEvent, CodeHostInput, CodeHostState, IncidentBrief
from vigil.integrations.owners import ServiceOwner, ServiceOwners
from vigil.models import DeployEvent, StoredDeployEvent
from vigil.settings import Settings
from vigil.severity import Severity
from vigil.store.database import Store

OPENED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHAS = {name: (name * 40)[:40] for name in ("a", "b", "c", "d", "e")}


def owners_for(service: str, repo: str = "acme/shop") -> ServiceOwners:
    return ServiceOwners(services={service: ServiceOwner(github_repo=repo)})


def settings_for(fake: FakeGitHub, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"github_url": fake.url, "github_token": fake.token, "console_url": "http://vigil.example"}
    values.update(overrides)
    return Settings.model_validate(values)


def brief(service: str, **overrides: Any) -> IncidentBrief:
    values: dict[str, Any] = {
        "incident_id": f"incident-{service}-1",
        "workflow_id": f"incident-{service}",
        "title": "NullPointerException in CartService @here",
        "status": "monitoring",
        "severity": Severity.HIGH,
        "service": service,
        "root_cause": "The v2 deploy calls cart.total() on an empty cart",
        "code_related": True,
        "opened_at": OPENED,
    }
    values.update(overrides)
    return IncidentBrief.model_validate(values)


def event(seq: int, message: str) -> BriefEvent:
    return BriefEvent(seq=seq, at=OPENED + timedelta(seconds=seq), kind="note", message=message)


async def no_deploys(service: str, at: datetime) -> list[StoredDeployEvent]:
    return []


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_commits(
            "acme/shop",
            [
                (SHAS["a"], "Release v1", "ann"),
                (SHAS["b"], "Add cart totals\n\nLonger description", "bob"),
                (SHAS["c"], "Cache prices", None),
                (SHAS["d"], "Release v2", "ann"),
                (SHAS["e"], "Release v3", "ann"),
            ],
        )
        yield fake


@pytest.fixture
def service() -> str:
    return f"svc{uuid.uuid4().hex[:10]}"


async def host_for(fake: FakeGitHub, owners: ServiceOwners, deploys: DeployLookup, **overrides: Any) -> GitHubCodeHost:
    return GitHubCodeHost(settings_for(fake, **overrides), owners, deploys, paced=False)


@pytest.fixture
async def host(github: FakeGitHub, service: str) -> AsyncIterator[GitHubCodeHost]:
    host = await host_for(github, owners_for(service), no_deploys)
    try:
        yield host
    finally:
        await host.close()


async def sync(
    host: GitHubCodeHost,
    b: IncidentBrief,
    events: list[BriefEvent],
    state: CodeHostState | None = None,
    postmortem: str | None = None,
) -> CodeHostState:
    result = await host.sync(CodeHostInput(brief=b, events=events, state=state, postmortem=postmortem))
    assert result is not None
    return result


async def deploy(store: Store, service: str, version: str, commit: str | None, at: datetime) -> None:
    await store.insert_deploy(DeployEvent(service=service, version=version, commit=commit, ts=at), received_at=at)


async def test_issue_lists_the_commits_of_the_suspect_deploy_once_even_after_a_crash(
    github: FakeGitHub, store: Store, service: str
) -> None:
    await deploy(store, service, "v1", SHAS["a"], OPENED - timedelta(hours=3))
    await deploy(store, service, "v2", SHAS["d"], OPENED - timedelta(minutes=10))
    await deploy(store, service, "config-7", None, OPENED - timedelta(minutes=5))  # no commit: not a code deploy
    await deploy(store, service, "v3", SHAS["e"], OPENED + timedelta(minutes=1))  # after the incident opened
    await deploy(store, "other" + service, "v9", SHAS["e"], OPENED - timedelta(minutes=1))
    host = await host_for(github, owners_for(service), store_deploy_lookup(store))
    try:
        events = [event(1, "alert fired")]
        state = await sync(host, brief(service), events)
        assert (state.repository, state.number, state.told_seq) == ("acme/shop", 1, 1)
        assert state.url == "https://github.example/acme/shop/issues/1"
        assert [(c.sha, c.message, c.author) for c in state.commits] == [
            (SHAS["b"], "Add cart totals", "bob"),
            (SHAS["c"], "Cache prices", "unknown"),
            (SHAS["d"], "Release v2", "ann"),
        ]
        assert state.commits[0].url == f"https://github.example/acme/shop/commit/{SHAS['b']}"
        issue = github.issue("acme/shop", 1)
        assert issue["labels"] == ["vigil", f"vigil-incident-{service}-1"]
        assert issue["title"] == f"[high] NullPointerException in CartService @here ({service})"
        assert "The v2 deploy calls cart.total\\(\\) on an empty cart" in issue["body"]
        assert "@here" not in issue["body"]  # no @mention from incident text
        assert f"[Vigil console](http://vigil.example/incidents/incident-{service}-1)" in issue["body"]
        comments = [comment["body"] for comment in issue["comments"]]
        assert len(comments) == 2
        assert "suspect deploy v2" in comments[0]
        assert "since v1" in comments[0]
        assert all(SHAS[x][:12] in comments[0] for x in "bcd")
        assert SHAS["e"][:12] not in comments[0]
        assert "alert fired" in comments[1]

        # The worker died before answering: the retry finds the issue and says nothing twice.
        again = await sync(host, brief(service), events)
        assert again == state
        assert len(github.issues_of("acme/shop")) == 1
        assert len(github.issue("acme/shop", 1)["comments"]) == 2
        assert github.requests.count("POST /repos/acme/shop/issues") == 1
    finally:
        await host.close()


async def test_one_deploy_with_a_commit_lists_that_commit(github: FakeGitHub, service: str) -> None:
    async def one(service_name: str, at: datetime) -> list[StoredDeployEvent]:
        assert (service_name, at) == (service, OPENED)
        return [StoredDeployEvent(id=1, service=service, version="v2", commit=SHAS["d"], ts=at, received_at=at)]

    host = await host_for(github, owners_for(service), one)
    try:
        state = await sync(host, brief(service), [])
    finally:
        await host.close()
    assert [c.sha for c in state.commits] == [SHAS["d"]]


async def test_store_deploy_lookup_is_newest_first_at_or_before(store: Store, service: str) -> None:
    await deploy(store, service, "v1", SHAS["a"], OPENED - timedelta(days=2))
    await deploy(store, service, "v2", SHAS["b"], OPENED)  # exactly when the incident opened: included
    await deploy(store, service, "v3", SHAS["c"], OPENED + timedelta(seconds=1))
    await deploy(store, service, "v0", SHAS["e"], OPENED - timedelta(days=365))  # beyond the lookback
    found = await store_deploy_lookup(store)(service, OPENED)
    assert [d.version for d in found] == ["v2", "v1"]


async def test_events_once_and_the_close_comment_and_postmortem_leave_the_issue_open(
    github: FakeGitHub, host: GitHubCodeHost, service: str
) -> None:
    state = await sync(host, brief(service), [event(1, "fired")])
    assert state.commits == []  # no deploys known
    state = await sync(host, brief(service), [event(1, "fired"), event(2, "restarted")], state)
    assert state.told_seq == 2
    closing = brief(service, status="closed", closed_at=OPENED + timedelta(hours=1))
    draft = "# Postmortem\n\n## Timeline\n- fired"
    closed = await sync(host, closing, [], state, postmortem=draft)
    assert closed.closed
    retried = await sync(host, closing, [], state, postmortem=draft)  # the answer was lost: nothing posted twice
    assert retried == closed
    again = await sync(host, brief(service, status="closed"), [], closed)
    assert again == closed
    issue = github.issue("acme/shop", state.number)
    comments = [comment["body"] for comment in issue["comments"]]
    assert len(comments) == 4
    assert "fired" in comments[0]
    assert "restarted" in comments[1]
    assert "fired" not in comments[1]
    assert "closed in Vigil" in comments[2]
    assert "## Postmortem draft" in comments[3]
    assert "## Timeline\n- fired" in comments[3]  # the Markdown kept whole, lines and all
    assert issue["state"] == "open"


async def test_nothing_for_incidents_without_code_or_repository(github: FakeGitHub, service: str) -> None:
    host = await host_for(github, owners_for(service), no_deploys)
    try:
        assert await host.sync(CodeHostInput(brief=brief(service, code_related=False))) is None
        assert await host.sync(CodeHostInput(brief=brief("unowned"))) is None
        by_component = await host.sync(CodeHostInput(brief=brief("unowned", component=service)))
    finally:
        await host.close()
    assert by_component is not None
    assert by_component.repository == "acme/shop"
    assert github.requests.count("POST /repos/acme/shop/issues") == 1


async def test_rate_limits_are_unavailable_until_github_says(
    github: FakeGitHub, host: GitHubCodeHost, service: str
) -> None:
    reset = int(time.time()) + 40
    github.fail(
        "GET /repos/acme/shop/issues",
        403,
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        body={"message": "API rate limit exceeded for user ID 1."},
    )
    with pytest.raises(IntegrationUnavailable, match="rate-limiting") as primary:
        await sync(host, brief(service), [])
    assert primary.value.retry_after is not None
    assert 30 <= primary.value.retry_after <= 40

    github.fail("POST /repos/acme/shop/issues", 429, retry_after=12, body={"message": "slow down"})
    with pytest.raises(IntegrationUnavailable) as secondary:
        await sync(host, brief(service), [])
    assert secondary.value.retry_after == 12
    assert github.issues_of("acme/shop") == []
    assert (await sync(host, brief(service), [])).number == 1


async def test_server_errors_and_unreachable_github_are_unavailable(
    github: FakeGitHub, host: GitHubCodeHost, service: str
) -> None:
    github.fail("POST /repos/acme/shop/issues", 502)
    with pytest.raises(IntegrationUnavailable, match="HTTP 502"):
        await sync(host, brief(service), [])
    unreachable = GitHubCodeHost(
        Settings.model_validate({"github_url": f"http://127.0.0.1:{free_port()}", "github_token": "t"}),
        owners_for(service),
        no_deploys,
        paced=False,
    )
    try:
        with pytest.raises(IntegrationUnavailable, match="unreachable"):
            await sync(unreachable, brief(service), [])
    finally:
        await unreachable.close()


async def test_refusals_are_rejected_without_the_token(github: FakeGitHub, service: str) -> None:
    missing = await host_for(github, owners_for(service, "acme/missing"), no_deploys)
    wrong = await host_for(github, owners_for(service), no_deploys, github_token="ghp-wrong")
    try:
        with pytest.raises(IntegrationRejected, match="HTTP 404"):
            await sync(missing, brief(service), [])
        with pytest.raises(IntegrationRejected, match=r"HTTP 401\): Bad credentials") as caught:
            await sync(wrong, brief(service), [])
        assert "ghp-wrong" not in str(caught.value)
    finally:
        await missing.close()
        await wrong.close()


async def test_check_names_the_login_and_refuses_a_bad_token(github: FakeGitHub, service: str) -> None:
    good = await host_for(github, owners_for(service), no_deploys)
    bad = await host_for(github, owners_for(service), no_deploys, github_token="ghp-wrong")
    try:
        assert await good.check() == f"GitHub: vigil-bot on {github.url}"
        with pytest.raises(IntegrationConfigError, match="refused GITHUB_TOKEN") as caught:
            await bad.check()
        assert "ghp-wrong" not in str(caught.value)
    finally:
        await good.close()
        await bad.close()
