"""`/knowledge`: search runbooks and past incidents (the hybrid search), read a runbook (`/knowledge?doc=<path>`),
and ask a question (DocQA) with its citations.

The knowledge base belongs to the ml worker (Qdrant local mode allows one process per path), so search and
questions run there as short workflows (`KnowledgeSearchWorkflow`, `DocQAWorkflow`), as `vigil ask` does.

Trust: a runbook is a file of OUR runbooks folder, written by the team that runs Vigil, so it is rendered as
markdown; `ui.markdown` still sanitises the HTML it produces (DOMPurify), and only files inside the runbooks folder
are ever read (`runbook_file` refuses `..`, absolute paths elsewhere and symlinks out). Everything else shown
here (hit snippets and titles, incident text, the answer) is plain text: labels, never HTML or markdown.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from temporalio.client import Client, WorkflowFailureError

from ui.console import TEMPORAL_ERRORS, console_incident_path, temporal_reason
from ui.marks import tagged
from ui.session import SignedInUser
from vigil.knowledge.base import INSTALL_ROOT
from vigil.knowledge.models import INCIDENTS, KnowledgeHit, KnowledgeSearchQuery, KnowledgeSearchResult
from vigil.rca.ask import ask_stack
from vigil.rca.models import ChatAnswer, ChatQuery, Citation
from vigil.rca.retrieval import runbooks_dir
from vigil.settings import INCIDENTS_TASK_QUEUE, Settings
from workflows.knowledge_search import KnowledgeSearchWorkflow

if TYPE_CHECKING:
    from ui.context import ConsoleContext

log = logging.getLogger(__name__)

PAGE_TITLE = "Vigil — knowledge"
RUNBOOK_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
MAX_RUNBOOK_BYTES = 512 * 1024
SNIPPET_CHARS = 400
SEARCH_SECONDS = 60.0
"""Longest wait for a search: the first one after the ml worker starts waits for its embedding model."""
ANSWER_SECONDS = 180.0
"""Longest wait for an answer (an LLM may take a while); DocQA's own activity timeout is 3 minutes too."""
WORKFLOW_ERRORS: tuple[type[Exception], ...] = (*TEMPORAL_ERRORS, WorkflowFailureError)


# --- pure functions ----------------------------------------------------------------------------------------


def doc_url(source: str) -> str:
    """The knowledge page showing one runbook (the same link the incident page makes)."""
    return f"/knowledge?doc={quote(source, safe='')}"


def hit_url(source: str, collection: str) -> str:
    return console_incident_path(source) if collection == INCIDENTS else doc_url(source)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def runbook_file(settings: Settings, doc: str) -> Path | None:
    """The runbook file `doc` names, when it is one inside the runbooks folder; else None.

    `doc` is a hit's source: relative to Vigil's own folder (shipped runbooks), to the working directory, or to
    the runbooks folder, or absolute. Whatever it is, the resolved file (symlinks followed) must lie inside the
    resolved runbooks folder and have a runbook suffix."""
    if not doc or "\x00" in doc:
        return None
    root = runbooks_dir(settings).resolve()
    given = Path(doc)
    candidates = [given] if given.is_absolute() else [INSTALL_ROOT / given, Path.cwd() / given, root / given]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            continue
        if resolved.is_relative_to(root) and resolved.suffix.lower() in RUNBOOK_SUFFIXES and resolved.is_file():
            return resolved
    return None


def read_runbook(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_RUNBOOK_BYTES + 1)
    text = data[:MAX_RUNBOOK_BYTES].decode("utf-8", errors="replace")
    return text + ("\n\n*(cut at 512 KB)*" if len(data) > MAX_RUNBOOK_BYTES else "")


def refused_doc_message(doc: str) -> str:
    return f"No runbook {doc!r} in the runbooks folder."


def unavailable_message(what: str, error: BaseException, timeout: float) -> str:
    if isinstance(error, WorkflowFailureError):
        reason = f"it failed: {error.cause or error}"
    elif isinstance(error, TimeoutError):
        reason = f"no ml worker answered within {timeout:g} s"
    else:
        reason = temporal_reason(error)
    return f"Cannot {what}: the knowledge base lives on the ml worker and {reason}. Try again."


@dataclass(frozen=True)
class HitView:
    source: str
    url: str
    title: str
    score: str
    snippet: str
    kind: str


def hit_view(hit: KnowledgeHit) -> HitView:
    kind = "past incident" if hit.collection == INCIDENTS else "runbook"
    return HitView(
        hit.source, hit_url(hit.source, hit.collection), hit.title, f"{hit.score:.3f}", snippet(hit.text), kind
    )


def citation_url(citation: Citation) -> str:
    return hit_url(citation.source, citation.collection)


# --- the stack -----------------------------------------------------------------------------------------------


async def search_stack(client: Client, query: KnowledgeSearchQuery) -> KnowledgeSearchResult:
    """The hybrid search, run by the stack's ml worker as a short `KnowledgeSearchWorkflow`."""
    async with asyncio.timeout(SEARCH_SECONDS):
        return await client.execute_workflow(
            KnowledgeSearchWorkflow.run,
            query,
            id=f"knowledge-search-{uuid.uuid4().hex}",
            task_queue=INCIDENTS_TASK_QUEUE,
            execution_timeout=timedelta(seconds=SEARCH_SECONDS),
        )


async def ask_with_timeout(client: Client, query: ChatQuery) -> ChatAnswer:
    async with asyncio.timeout(ANSWER_SECONDS):
        return await ask_stack(client, query)


# --- page --------------------------------------------------------------------------------------------------


async def knowledge_page(context: ConsoleContext, user: SignedInUser, doc: str | None = None) -> None:
    """Build `/knowledge` for one tab: the runbook `doc` when given, then search and questions."""
    from nicegui import ui

    del user  # every signed-in user may read the knowledge base
    ui.page_title(PAGE_TITLE)
    ui.label("Knowledge").classes("text-h5")
    if doc:
        await _runbook(context.settings, doc)

    with ui.card().classes("w-full"):
        ui.label("Search runbooks and past incidents").classes("text-subtitle1 text-weight-medium")
        with ui.row().classes("w-full items-center no-wrap"):
            search_box = tagged(
                ui.input("What to look for", validation={"at most 500 characters": lambda v: len(v or "") <= 500})
                .props("clearable")
                .classes("grow"),
                "knowledge-search-input",
            )
            search_button = tagged(ui.button("Search"), "knowledge-search-button")
        search_message = tagged(ui.label("").classes("text-grey-7"), "knowledge-search-message")
        results = ui.column().classes("w-full")

    with ui.card().classes("w-full"):
        ui.label("Ask a question").classes("text-subtitle1 text-weight-medium")
        with ui.row().classes("w-full items-center no-wrap"):
            question_box = tagged(
                ui.input("Your question", validation={"at most 2000 characters": lambda v: len(v or "") <= 2000})
                .props("clearable")
                .classes("grow"),
                "knowledge-question",
            )
            ask_button = tagged(ui.button("Ask"), "knowledge-ask-button")
        answer_message = tagged(ui.label("").classes("text-grey-7"), "knowledge-answer-message")
        answer_box = ui.column().classes("w-full")

    async def search() -> None:
        text = (search_box.value or "").strip()
        if not text or len(text) > 500:
            search_message.set_text("Type what to look for (up to 500 characters).")
            return
        search_button.disable()
        search_message.set_text("Searching…")
        results.clear()
        try:
            client = await context.source.client()
            found = await search_stack(client, KnowledgeSearchQuery(query=text))
        except WORKFLOW_ERRORS as error:
            search_message.set_text(unavailable_message("search", error, SEARCH_SECONDS))
            return
        finally:
            search_button.enable()
        search_message.set_text(
            f"{len(found.hits)} hit(s) for {text!r}" if found.hits else f"Nothing found for {text!r}."
        )
        with results:
            for hit in found.hits:
                _hit_card(hit_view(hit))

    async def ask() -> None:
        text = (question_box.value or "").strip()
        if not text or len(text) > 2000:
            answer_message.set_text("Type a question (up to 2000 characters).")
            return
        ask_button.disable()
        answer_message.set_text("Answering…")
        answer_box.clear()
        try:
            client = await context.source.client()
            reply = await ask_with_timeout(client, ChatQuery(question=text))
        except WORKFLOW_ERRORS as error:
            answer_message.set_text(unavailable_message("answer", error, ANSWER_SECONDS))
            return
        finally:
            ask_button.enable()
        how = "LLM" if reply.source == "llm" else "extractive (sentences from the passages, no LLM)"
        answer_message.set_text(f"Answer ({how})" + (f" — {reply.llm_error}" if reply.llm_error else ""))
        with answer_box:
            tagged(ui.label(reply.answer).classes("vigil-text w-full"), "knowledge-answer")
            if reply.citations:
                ui.label("Citations").classes("text-weight-medium")
            for citation in reply.citations:
                row = tagged(ui.row().classes("items-baseline"), "knowledge-citation")
                row.props["data-source"] = citation.source
                with row:
                    ui.label(f"[{citation.id}]").classes("text-grey-7")
                    ui.link(citation.title or citation.source, citation_url(citation))
                    ui.label(citation.source).classes("text-caption text-grey-7")

    search_button.on_click(search)
    search_box.on("keydown.enter", search)
    ask_button.on_click(ask)
    question_box.on("keydown.enter", ask)


def _hit_card(view: HitView) -> None:
    from nicegui import ui

    with tagged(ui.column().classes("w-full gap-0 q-py-xs"), "knowledge-hit"):
        with ui.row().classes("items-baseline"):
            tagged(ui.link(view.title or view.source, view.url), "knowledge-hit-link")
            ui.label(f"{view.kind} · {view.source} · score {view.score}").classes("text-caption text-grey-7")
        ui.label(view.snippet).classes("text-body2")


async def _runbook(settings: Settings, doc: str) -> None:
    from nicegui import ui

    path = runbook_file(settings, doc)
    with tagged(ui.card().classes("w-full"), "knowledge-doc"):
        if path is None:
            tagged(ui.label(refused_doc_message(doc)).classes("text-negative"), "knowledge-doc-message")
            return
        try:
            text = await asyncio.to_thread(read_runbook, path)
        except OSError as error:
            ui.label(f"Cannot read the runbook {doc!r}: {error.strerror or error}").classes("text-negative")
            return
        ui.label(doc).classes("text-caption text-grey-7")
        ui.markdown(text)  # our own runbooks (see the module docstring); still sanitised by ui.markdown
