"""The Knowledge page (ui.knowledge): which runbook files it reads, search and DocQA through the session's real
workers (their knowledge base holds the small fixture runbooks), and the search activity's use of responders'
verdicts on past incidents, on a real local knowledge base and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nicegui import ui
from nicegui.storage import Storage
from nicegui.testing import user_simulation
from temporalio.testing import ActivityEnvironment

from activities.knowledge_search import KnowledgeSearchActivities
from tests.conftest import FIXTURES
from tests.insights_support import Seed, fresh_store, seed
from tests.support import free_port
from ui.console import IncidentSource
from ui.context import ConsoleContext
from ui.knowledge import doc_url, knowledge_page, refused_doc_message, runbook_file
from ui.session import SignedInUser
from vigil.analysis.models import Category
from vigil.auth.roles import Role
from vigil.feedback import CONFIRMED_BONUS, DiagnosisFeedback, FeedbackVerdict
from vigil.knowledge.models import KnowledgeSearchQuery, ResolvedIncident
from vigil.rca.retrieval import IncidentKnowledge
from vigil.settings import Settings
from vigil.store.database import Store

VIEWER = SignedInUser("vera", Role.VIEWER)
RUNBOOK = "tests/fixtures/runbooks/postgres-connections.md"


def settings_with(runbooks: Path, **extra: object) -> Settings:
    return Settings.model_validate({"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "runbooks_dir": runbooks, **extra})


# --- which files -------------------------------------------------------------------------------------------


def test_only_runbook_files_inside_the_runbooks_folder_are_read(tmp_path: Path) -> None:
    settings = settings_with(FIXTURES / "runbooks")
    inside = (FIXTURES / "runbooks" / "postgres-connections.md").resolve()

    assert runbook_file(settings, RUNBOOK) == inside  # as a hit names it (relative to Vigil's folder)
    assert runbook_file(settings, "postgres-connections.md") == inside  # relative to the runbooks folder
    assert runbook_file(settings, str(inside)) == inside
    for refused in (
        "../../../../etc/passwd",
        "/etc/passwd",
        "README.md",  # a file of the repository, not a runbook
        "tests/fixtures/runbooks/../../conftest.py",
        "postgres-connections.md\x00.md",
        "",
    ):
        assert runbook_file(settings, refused) is None, refused

    folder = tmp_path / "runbooks"
    folder.mkdir()
    (tmp_path / "secret.md").write_text("# secret\n")
    (folder / "escape.md").symlink_to(tmp_path / "secret.md")
    (folder / "notes.yml").write_text("a: 1\n")
    assert runbook_file(settings_with(folder), "escape.md") is None
    assert runbook_file(settings_with(folder), "notes.yml") is None


@pytest.fixture
def nicegui_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Storage, "path", tmp_path / "nicegui")


@pytest.mark.usefixtures("nicegui_storage")
async def test_a_runbook_is_rendered_and_a_path_outside_refused() -> None:
    context = ConsoleContext(settings_with(FIXTURES / "runbooks"), IncidentSource(settings_with(FIXTURES)))
    heading = next(
        line.lstrip("# ").strip()
        for line in (FIXTURES / "runbooks" / "postgres-connections.md").read_text().splitlines()
        if line.startswith("#")
    )

    async with user_simulation(root=lambda: knowledge_page(context, VIEWER, doc=RUNBOOK)) as user:
        await user.open("/")
        await user.should_see(RUNBOOK)
        markdown = next(iter(user.find(ui.markdown).elements))
        assert heading in markdown.content
    async with user_simulation(root=lambda: knowledge_page(context, VIEWER, doc="../../etc/passwd")) as user:
        await user.open("/")
        await user.should_see(refused_doc_message("../../etc/passwd"))
        await user.should_not_see(kind=ui.markdown)


# --- through the stack -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_search_and_ask_through_the_running_stack(worker_settings: Settings, store: Store) -> None:
    context = ConsoleContext(worker_settings, IncidentSource(worker_settings), store)

    async with user_simulation(root=lambda: knowledge_page(context, VIEWER)) as user:
        await user.open("/")
        user.find(marker="knowledge-search-input").type("database connection pool exhausted, too many clients")
        user.find(marker="knowledge-search-button").click()
        await user.should_see("hit(s) for", retries=300)
        shown = sorted(user.find(marker="knowledge-hit-link").elements, key=lambda link: link.id)  # page order
        assert shown[0].props["href"] == doc_url(RUNBOOK)
        await user.should_see(f"runbook · {RUNBOOK} · score ")

        user.find(marker="knowledge-question").type("What should I do when the disk is full?")
        user.find(marker="knowledge-ask-button").click()
        await user.should_see("Answer (", retries=300)
        answer = next(iter(user.find(kind=ui.label, marker="knowledge-answer").elements))
        assert answer.text.strip()
        cited = {str(row.props["data-source"]) for row in user.find(marker="knowledge-citation").elements}
        assert "tests/fixtures/runbooks/disk-full.md" in cited
        citation_links = {link.props["href"] for link in user.find(ui.link).elements}
        assert doc_url("tests/fixtures/runbooks/disk-full.md") in citation_links


@pytest.mark.usefixtures("nicegui_storage")
async def test_search_says_so_when_temporal_is_down() -> None:
    settings = settings_with(FIXTURES / "runbooks")
    context = ConsoleContext(settings, IncidentSource(settings))

    async with user_simulation(root=lambda: knowledge_page(context, VIEWER)) as user:
        await user.open("/")
        user.find(marker="knowledge-search-input").type("disk full")
        user.find(marker="knowledge-search-button").click()
        await user.should_see("Cannot search: the knowledge base lives on the ml worker", retries=100)


# --- past incidents and their verdicts ---------------------------------------------------------------------


@pytest.fixture
async def own_store(database_url: str) -> AsyncIterator[Store]:
    async with fresh_store(database_url) as (_, opened):
        yield opened


async def test_search_ranks_and_annotates_past_incidents_by_verdict(own_store: Store, tmp_path: Path) -> None:
    empty = tmp_path / "no-runbooks"
    empty.mkdir()
    knowledge = IncidentKnowledge(Settings.model_validate({"state_dir": tmp_path / "state", "runbooks_dir": empty}))
    query = KnowledgeSearchQuery(query="checkout 500 errors edge proxy", collections=["incidents"])
    search = KnowledgeSearchActivities(knowledge, own_store).search_knowledge
    try:
        kb = knowledge.base()
        for incident_id, region in (("inc-a", "eu"), ("inc-b", "us")):  # all but equal texts: near-equal scores
            kb.index_incident(
                ResolvedIncident(
                    incident_id=incident_id,
                    title=f"Checkout errors in {region}",
                    summary="checkout failed with 500s",
                    root_cause="edge proxy dropped connections",
                    resolution="restarted the proxy",
                    category="network",
                    services=["checkout"],
                    resolved_at=datetime(2030, 3, 1, tzinfo=UTC),
                )
            )
            await seed(
                own_store,
                Seed(incident_id, datetime(2030, 3, 1, tzinfo=UTC), diagnosis=(Category.NETWORK, "edge-proxy")),
            )
        before = await ActivityEnvironment().run(search, query)
        first, second = (hit.source for hit in before.hits)

        # The one found first is marked wrong (corrected, then by a later verdict plainly wrong); the other confirmed.
        await own_store.record_feedback(
            DiagnosisFeedback(
                incident_id=first, verdict=FeedbackVerdict.WRONG, category=Category.DATABASE, actor="alice"
            )
        )
        await own_store.record_feedback(
            DiagnosisFeedback(incident_id=second, verdict=FeedbackVerdict.RIGHT, actor="bob")
        )
        await own_store.record_feedback(
            DiagnosisFeedback(incident_id=first, verdict=FeedbackVerdict.WRONG, actor="carol")
        )
        after = await ActivityEnvironment().run(search, query)

        by_source = {hit.source: hit for hit in after.hits}
        assert by_source[second].text.endswith("diagnosis confirmed by bob.")
        assert by_source[first].text.endswith("diagnosis marked wrong by carol.")  # the latest verdict counts
        assert {hit.source: hit.score for hit in after.hits} == {hit.source: hit.score for hit in before.hits}
        # Verdicts break ties (RRF scores tie often); they never reorder matches the search ranks clearly apart.
        gap = before.hits[0].score - before.hits[1].score
        expected = [second, first] if gap < 2 * CONFIRMED_BONUS else [first, second]
        assert [hit.source for hit in after.hits] == expected
    finally:
        knowledge.close()
