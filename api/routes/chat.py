"""DocQA: `POST /api/v1/chat/query` answers a question from the runbooks and past incidents, with citations.

The ml worker owns the knowledge base, so the question runs there as a short `DocQAWorkflow`."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Depends, HTTPException, status
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from api.deps import ClientDep, require_token
from api.metrics import API_ERRORS
from vigil.rca.models import ChatAnswer, ChatQuery
from vigil.settings import INCIDENTS_TASK_QUEUE
from workflows.docqa import DocQAWorkflow

router = APIRouter(prefix="/api/v1/chat", tags=["chat"], dependencies=[Depends(require_token)])
ANSWER_TIMEOUT = timedelta(minutes=3)


async def ask(client: ClientDep, query: ChatQuery) -> ChatAnswer:
    return await client.execute_workflow(
        DocQAWorkflow.run,
        query,
        id=f"docqa-{uuid.uuid4().hex}",
        task_queue=INCIDENTS_TASK_QUEUE,
        execution_timeout=ANSWER_TIMEOUT,
    )


@router.post("/query", response_model=ChatAnswer, summary="Answer a question from runbooks and past incidents")
async def chat_query(query: ChatQuery, client: ClientDep) -> ChatAnswer:
    try:
        return await ask(client, query)
    except WorkflowFailureError as exc:
        API_ERRORS.labels("chat_query", "502").inc()
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"answering failed: {exc.cause}") from exc
    except RPCError as exc:
        API_ERRORS.labels("chat_query", "503").inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"Temporal: {exc.message}", headers={"Retry-After": "5"}
        ) from exc
