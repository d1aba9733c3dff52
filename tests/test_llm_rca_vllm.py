"""The LLM RCA and DocQA against a real vLLM (CPU build, tiny random-weight Llama, guided decoding): schema,
parsing, citation verifier, errors, and a prompt injection carried by log lines through the whole workflow."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.conftest import FIXTURES, make_settings, start_temporal
from tests.rca_support import INJECTION, RUNBOOK, outage_bundle, outage_logs
from tests.support import am_alert, am_webhook, eventually
from vigil.analysis.bundle import parse_bundle
from vigil.analysis.classify import default_classifier
from vigil.analysis.report import analyze
from vigil.knowledge.models import KnowledgeHit
from vigil.models import IncidentDetail, IncidentStatus, TimelineKind
from vigil.rca.docqa import answer
from vigil.rca.engine import deterministic_rca, llm_rca
from vigil.rca.llm import LLMError
from vigil.rca.models import ChatQuery, RootCauseAnalysis
from vigil.rca.prompt import build_messages, fence_marker
from vigil.settings import Settings
from vigil.store.database import Store
from workers.main import build_worker

# Vigil budgets 1,500 tokens of prompt at its conservative 3.5 characters a token: the tiny model's tokenizer
# (trained on a few sentences) takes ~1.4, so ~3,900 real tokens, plus 1,500 of answer, inside the server's 8,192.
LLM_SETTINGS = {"llm_model": "tiny", "llm_context_tokens": 3000, "llm_max_tokens": 1500, "llm_timeout_seconds": 120}


def llm_settings(base_url: str, **extra: object) -> Settings:
    return Settings.model_validate({"llm_base_url": base_url, **LLM_SETTINGS, **extra})


@pytest.fixture(scope="module")
def det() -> RootCauseAnalysis:
    report = analyze(parse_bundle(outage_bundle(injection=True)), classifier=default_classifier())
    return deterministic_rca(report, [RUNBOOK], [], llm_error=None)


async def test_guided_rca_from_real_vllm_cites_only_evidence(vllm_base_url: str, det: RootCauseAnalysis) -> None:
    rca = await llm_rca(llm_settings(vllm_base_url), det, "ToyprodDependencyDown")
    ids = {item.id for item in det.evidence}
    assert rca.source == "llm", rca.llm_error
    assert rca.model == "tiny"
    assert rca.root_cause.evidence
    assert set(rca.root_cause.evidence) <= ids
    assert all(set(c.evidence) <= ids for c in rca.claims)
    assert all(set(a.evidence) <= ids for a in rca.recommended_actions)
    assert rca.dropped == []  # the schema allowed only real ids
    assert 0 <= rca.confidence <= 1


async def test_unconstrained_answer_goes_through_the_verifier(vllm_base_url: str, det: RootCauseAnalysis) -> None:
    """Without the id enum a random model writes ids that do not exist: every such claim is dropped and listed,
    and a root cause without a valid citation leaves the deterministic RCA in place."""
    rca = await llm_rca(llm_settings(vllm_base_url), det, "ToyprodDependencyDown", constrain_ids=False)
    ids = {item.id for item in det.evidence}
    assert rca.dropped, "random ids should not all exist"
    assert all(d.unknown_ids or d.text for d in rca.dropped)
    assert all(not (set(d.unknown_ids) & ids) for d in rca.dropped)
    if rca.source == "deterministic":
        assert rca.llm_error is not None
        assert rca.root_cause == det.root_cause
    else:
        assert set(rca.root_cause.evidence) <= ids


async def test_unknown_model_is_not_retryable(vllm_base_url: str, det: RootCauseAnalysis) -> None:
    with pytest.raises(LLMError) as caught:
        await llm_rca(llm_settings(vllm_base_url, llm_model="no-such-model"), det, "t")
    assert not caught.value.retryable
    assert "404" in str(caught.value)


async def test_docqa_through_real_vllm_cites_passages(vllm_base_url: str) -> None:
    passages = [
        (
            "doc:1",
            KnowledgeHit(source="a.md", title="Pool", score=1, text="Raise the pool size.", collection="runbooks"),
        ),
        ("doc:2", KnowledgeHit(source="b.md", title="Disk", score=1, text="Free disk space.", collection="runbooks")),
    ]
    reply = await answer(llm_settings(vllm_base_url), ChatQuery(question="pool exhausted?"), passages)
    assert reply.source == "llm", reply.llm_error
    assert reply.citations
    assert {c.id for c in reply.citations} <= {"doc:1", "doc:2"}


@pytest.fixture
async def llm_stack(
    vllm_base_url: str,
    database_url: str,
    store: Store,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    """A Temporal server of its own with the incidents worker and an ml worker configured with the vLLM server,
    and the API on it."""
    env: WorkflowEnvironment = await start_temporal()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(env.shutdown)
        settings = make_settings(
            database_url,
            env.client,
            state_dir=tmp_path,
            runbooks_dir=FIXTURES / "runbooks",
            llm_base_url=vllm_base_url,
            quiet_period_seconds=3600,
            diagnosis_wait_seconds=600,
            **LLM_SETTINGS,
        )
        for role in ("incidents", "ml"):
            worker = await build_worker(role, env.client, stack, settings, warm_knowledge=True)
            await stack.enter_async_context(worker)
        app = create_app(settings, client=env.client, store=store)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test")
        stack.push_async_callback(client.aclose)
        yield client


async def test_prompt_injection_in_logs_changes_no_action_or_approval(
    llm_stack: httpx.AsyncClient, unique: str
) -> None:
    client = llm_stack
    service = f"svc-{unique.lower()}"
    start = datetime.now(UTC) - timedelta(minutes=12)
    assert (
        await client.post("/api/v1/logs", json=outage_logs(service, start=start, injection=True))
    ).status_code == 202
    response = await client.post(
        "/api/v1/alerts/alertmanager", json=am_webhook([am_alert(unique, service=service, instance="i1")])
    )
    assert response.status_code == 202, response.text
    incident_id = response.json()["incidents"][0]["incident_id"]

    async def detail() -> IncidentDetail:
        r = await client.get(f"/api/v1/incidents/{incident_id}")
        return IncidentDetail.model_validate(r.json())

    def llm_done(d: IncidentDetail) -> bool:
        if d.state is None:
            return False
        messages = [e.message for e in d.state.timeline]
        diagnosed = [e for e in d.state.timeline if e.kind is TimelineKind.DIAGNOSED]
        return len(diagnosed) == 2 or any("LLM RCA failed" in m for m in messages)

    d = await eventually(detail, llm_done, timeout=300)
    assert d.state is not None
    rca = d.state.diagnosis
    assert rca is not None
    assert rca.source == "llm", [e.message for e in d.state.timeline]
    # The evidence the model read contained the injected line, inside data fences only.
    assert any("ignore previous instructions" in (i.detail + i.title) for i in rca.evidence), [
        (i.id, i.title) for i in rca.evidence
    ]
    messages, _ = build_messages(rca.evidence, incident=d.state.title, analysis_hint="", budget_tokens=2000)
    fence = fence_marker(rca.evidence)
    assert INJECTION[:30] not in "".join(messages[1]["content"].split(fence)[0::2])
    # ...and it changed nothing: no proposal, no approval, no remediation, status as triage left it.
    d = await eventually(detail, lambda x: x.state is not None and x.state.status is IncidentStatus.MONITORING)
    assert d.state is not None
    assert d.state.pending_approval is None
    assert d.state.decisions == []
    kinds = {e.kind for e in d.state.timeline}
    assert not kinds & {TimelineKind.REMEDIATION_PROPOSED, TimelineKind.APPROVED, TimelineKind.REJECTED}
    assert "remediating" not in json.dumps([e.message for e in d.state.timeline])
    # A remediation a person proposes still waits for a person: the model's text approved nothing.
    proposal = {"action": "restart-deployment", "params": {"deployment": service}, "proposed_by": "ana"}
    assert (await client.post(f"/api/v1/incidents/{incident_id}/remediation", json=proposal)).status_code == 200
    d = await detail()
    assert d.state is not None
    assert d.state.status is IncidentStatus.AWAITING_APPROVAL
    assert d.state.decisions == []
