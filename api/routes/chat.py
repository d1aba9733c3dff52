"""DocQA: `POST /api/v1/chat/query` answers a question from the runbooks and past incidents, with citations.

The ml worker owns the knowledge base, so the question runs there as a short `DocQAWorkflow`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from api.deps import AUTH_RESPONSES, RETRY_AFTER, ClientDep, require_responder
from api.metrics import API_ERRORS
from vigil.rca.ask import ask_stack
from vigil.rca.models import ChatAnswer, ChatQuery

router = APIRouter(
    prefix="/api/v1/chat", tags=["chat"], dependencies=[Depends(require_responder)], responses=AUTH_RESPONSES
)


@router.post("/query", response_model=ChatAnswer, summary="Answer a question from runbooks and past incidents")
async def chat_query(query: ChatQuery, client: ClientDep) -> ChatAnswer:
    try:
        return await ask_stack(client, query)
    except WorkflowFailureError as exc:
        API_ERRORS.labels("chat_query", "502").inc()
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"answering failed: {exc.cause}") from exc
    except RPCError as exc:
        API_ERRORS.labels("chat_query", "503").inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"Temporal: {exc.message}", headers=RETRY_AFTER
        ) from exc
