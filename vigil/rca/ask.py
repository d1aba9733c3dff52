"""`vigil ask "..."`: DocQA through the running stack (its ml worker owns the knowledge base), or offline
from the local knowledge base when no stack answers."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import timedelta

from rich.console import Console
from temporalio.client import Client

from vigil.health import probe_workers
from vigil.knowledge.base import KnowledgeBaseError
from vigil.rca.docqa import answer, retrieve
from vigil.rca.models import ChatAnswer, ChatQuery
from vigil.rca.retrieval import IncidentKnowledge
from vigil.settings import INCIDENTS_TASK_QUEUE, Settings
from vigil.temporal import connect
from workflows.docqa import DocQAWorkflow

PROBE_SECONDS = 5.0
ANSWER_TIMEOUT = timedelta(minutes=3)


async def ask_stack(client: Client, query: ChatQuery) -> ChatAnswer:
    """The question answered by the running stack's ml worker, as a short `DocQAWorkflow`."""
    return await client.execute_workflow(
        DocQAWorkflow.run,
        query,
        id=f"docqa-{uuid.uuid4().hex}",
        task_queue=INCIDENTS_TASK_QUEUE,
        execution_timeout=ANSWER_TIMEOUT,
    )


async def _stack_client(settings: Settings) -> Client | None:
    try:
        client = await asyncio.wait_for(connect(settings), PROBE_SECONDS)
        await probe_workers(client, timeout=PROBE_SECONDS)
    except Exception:  # no server, or no workers polling: answer offline
        return None
    return client


async def _ask(settings: Settings, query: ChatQuery) -> ChatAnswer:
    client = await _stack_client(settings)
    if client is not None:
        return await ask_stack(client, query)
    kb = IncidentKnowledge(settings)
    try:
        passages = await asyncio.to_thread(lambda: retrieve(kb.base(), query))
    finally:
        kb.close()
    return await answer(settings, query, passages)


def run_ask(question: str, *, k: int, as_json: bool, settings: Settings) -> int:
    try:
        query = ChatQuery(question=question, k=k)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        reply = asyncio.run(_ask(settings, query))
    except KnowledgeBaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        sys.stdout.write(json.dumps(reply.model_dump(mode="json"), indent=2) + "\n")
        return 0
    console = Console()
    console.print(reply.answer)
    console.print()
    for citation in reply.citations:
        console.print(f"[bold]\\[{citation.id}][/] {citation.title} — {citation.source}")
    if reply.llm_error:
        console.print(f"[dim]({reply.source} answer: {reply.llm_error})[/]")
    return 0
