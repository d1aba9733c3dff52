"""Diagnosis activities on `vigil-ml`: gather, analyse, retrieve and write the RCA; the LLM RCA; DocQA; and
indexing a resolved incident into the knowledge base. Their metrics go out through the worker's Temporal
runtime, on its Prometheus endpoint (`vigil_diagnoses_total`, `vigil_diagnosis_stage_seconds`,
`vigil_llm_requests_total`, `vigil_rca_dropped_claims_total`, `vigil_retrieval_failures_total`,
`vigil_docqa_answers_total`).

`diagnose_incident` reads the incident's log window, spans and deploys from the store itself (megabytes of log text
never pass through workflow history), runs the analysis engine in a thread while heartbeating, retrieves
runbooks and similar incidents, and returns the deterministic RCA. `llm_diagnose` improves on it when an LLM is
configured: a rejected request (4xx, an answer outside the schema) fails non-retryably, an unreachable or slow
server is retried by Temporal, and either way the workflow keeps the deterministic RCA.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import with_heartbeat
from vigil.analysis.bundle import MAX_LOG_RECORDS, Alert, Bundle, Deploy, LogRecord, MetricSeries
from vigil.analysis.classify import default_classifier
from vigil.analysis.report import AnalysisReport, analyze
from vigil.feedback import rerank_similar
from vigil.knowledge.models import KnowledgeHit, ResolvedIncident
from vigil.models import AlertRecord, DiagnoseInput, Diagnosis, LLMDiagnoseInput
from vigil.models import LogRecord as StoredLogRecord
from vigil.prometheus import MAX_ALERT_EXPRESSIONS, alert_expressions, query_range
from vigil.rca.docqa import answer, retrieve
from vigil.rca.engine import NO_LLM, deterministic_rca, link_catalogue_actions, llm_rca
from vigil.rca.llm import LLMError, llm_configured
from vigil.rca.models import ChatAnswer, ChatQuery, RootCauseAnalysis
from vigil.rca.retrieval import INCIDENT_CANDIDATES, INCIDENT_HITS, IncidentKnowledge, runbooks_dir
from vigil.remediation.catalogue import load_configured_catalogue
from vigil.remediation.errors import RemediationConfigError
from vigil.settings import Settings
from vigil.store.database import Store

log = logging.getLogger("vigil.diagnosis")
LLM_REJECTED = "LLMRejected"
"""Error type of a non-retryable LLM failure; the workflow's retry policy names it."""
MAX_GATHERED_SPANS = 50_000
"""Spans a diagnosis reads at most: whole traces touching the alerting services, sampled when there are more."""
ANALYSIS_FAILED = "AnalysisFailed"
"""Error type of an analysis that raised on its input: retrying the same input cannot help."""


def _count(name: str, description: str, value: int = 1, **attributes: str) -> None:
    activity.metric_meter().create_counter(name, description).add(value, attributes)


@contextmanager
def _stage(stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram = activity.metric_meter().create_histogram_float(
            "vigil_diagnosis_stage_seconds", "Time of one diagnosis stage.", "s"
        )
        histogram.record(time.perf_counter() - start, {"stage": stage})


def _bundle_alert(record: AlertRecord) -> Alert:
    return Alert.model_validate(
        {
            "status": record.status.value,
            "labels": record.labels,
            "annotations": record.annotations,
            "startsAt": record.starts_at,
            "endsAt": record.ends_at,
            "fingerprint": record.fingerprint,
            "generatorURL": record.generator_url,
        }
    )


def _bundle_log(record: StoredLogRecord) -> LogRecord:
    """A stored line back as a JSON log line, so the normaliser sees its level and structured fields."""
    fields: dict[str, str] = {"ts": record.ts.isoformat()}
    if record.level:
        fields["level"] = record.level
    fields["message"] = record.message
    if record.trace_id:
        fields["trace_id"] = record.trace_id
    if record.request_id:
        fields["request_id"] = record.request_id
    for key, value in record.labels.items():
        fields.setdefault(key, value)
    return LogRecord(ts=record.ts, service=record.service, line=json.dumps(fields)[:65_536])


class DiagnosisActivities:
    def __init__(self, store: Store, knowledge: IncidentKnowledge, settings: Settings) -> None:
        self._store = store
        self._knowledge = knowledge
        self._settings = settings

    async def _gather(self, data: DiagnoseInput) -> Bundle:
        alerts = [_bundle_alert(a) for a in data.alerts]
        services = sorted({s for a in data.alerts if (s := a.labels.get("service") or a.labels.get("job"))})
        first = min((a.starts_at for a in data.alerts), default=data.opened_at)
        start = min(first, data.opened_at) - timedelta(minutes=data.lookback_minutes)
        end = activity.info().current_attempt_scheduled_time + timedelta(seconds=1)
        per_service = MAX_LOG_RECORDS // max(len(services), 1)
        logs: list[LogRecord] = []
        for service in services:
            logs += [_bundle_log(r) for r in await self._store.logs_window(service, start, end, per_service)]
        deploy_start = first - timedelta(minutes=data.deploy_lookback_minutes)
        deploys = [
            Deploy(
                ts=d.ts,
                service=d.service,
                version=d.version,
                commit=d.commit,
                author=d.author,
                description=d.description,
            )
            for d in await self._store.deploys(service=None, start=deploy_start, end=end)
        ]
        metrics = await self._metrics(data.alerts, start, end)
        traces = await self._store.spans_window(services or None, start, end, MAX_GATHERED_SPANS)
        return Bundle(alerts=alerts, logs=logs, deploys=deploys, metrics=metrics, traces=traces)

    async def _metrics(self, alerts: list[AlertRecord], start: datetime, end: datetime) -> list[MetricSeries]:
        """The alerts' own rule expressions over the window, from the Prometheus that fired them."""
        base_url = self._settings.prometheus_query_url
        exprs = alert_expressions(alerts, MAX_ALERT_EXPRESSIONS)
        if base_url is None or not exprs:
            return []
        series: list[MetricSeries] = []
        for expr, name in exprs.items():
            try:
                series += await query_range(base_url, expr, start, end, name=name)
            except (httpx.HTTPError, ValueError, KeyError) as exc:  # metrics are an aid, never a blocker
                log.info("no metric series for %s from %s: %s", name, base_url, exc)
                _count("vigil_metric_queries_failed_total", "Prometheus queries of the diagnosis that failed.")
        return series

    @activity.defn(name="diagnose_incident")
    async def diagnose_incident(self, data: DiagnoseInput) -> Diagnosis:
        stage = ["gathering logs and deploys"]
        with _stage("gather"):
            bundle = await self._gather(data)
        try:
            with _stage("analysis"):
                report: AnalysisReport = await with_heartbeat(
                    asyncio.to_thread(analyze, bundle, classifier=default_classifier(), progress=stage.append),
                    lambda: stage[-1],
                )
        except Exception as exc:
            # Pure computation over what was gathered: the same input fails the same way, so retrying it would
            # only spin. Gathering (store, Prometheus) stays retryable for as long as the workflow allows.
            raise ApplicationError(f"analysis failed: {exc!r}"[:500], type=ANALYSIS_FAILED, non_retryable=True) from exc
        stage.append("retrieving runbooks and similar incidents")
        try:
            with _stage("retrieval"):
                runbooks, incidents = await with_heartbeat(
                    asyncio.to_thread(self._knowledge.retrieve, data.alerts, report, incident_hits=INCIDENT_CANDIDATES),
                    lambda: stage[-1],
                )
        except Exception as exc:  # retrieval is an aid: a broken knowledge base must not block the diagnosis
            log.warning("retrieval failed for %s: %s", data.incident_id, exc)
            _count("vigil_retrieval_failures_total", "Retrievals that failed; the diagnosis went on without.")
            runbooks, incidents = [], []
        incidents = await self._ranked_by_feedback(incidents)
        configured = llm_configured(self._settings)
        rca = deterministic_rca(report, runbooks, incidents, llm_error=None if configured else NO_LLM)
        try:
            rca = await asyncio.to_thread(self._link_actions, rca, data.alerts)
        except Exception as exc:  # links are an aid: a broken runbook folder must not block the diagnosis
            log.warning("runbook links not read for %s: %s", data.incident_id, exc)
        await self._store.save_diagnosis(data.incident_id, rca)
        _count("vigil_diagnoses_total", "Diagnoses written.", source=rca.source, category=rca.category.value)
        return Diagnosis(rca=rca, llm_configured=configured, log_lines=len(bundle.logs))

    async def _ranked_by_feedback(self, incidents: list[KnowledgeHit]) -> list[KnowledgeHit]:
        """The similar incidents re-ranked by responders' verdicts on their diagnoses (vigil.feedback), cut to
        `INCIDENT_HITS`: here, where the knowledge base's candidates and the store's verdicts are both at hand."""
        try:
            latest = await self._store.latest_feedback([hit.source for hit in incidents])
        except Exception as exc:  # feedback is an aid: without the store, the retrieval order stands
            log.warning("similar incidents not re-ranked by feedback: %s", exc)
            latest = {}
        return rerank_similar(incidents, latest, k=INCIDENT_HITS)

    def _link_actions(self, rca: RootCauseAnalysis, alerts: list[AlertRecord]) -> RootCauseAnalysis:
        """The catalogue actions the alerts' and the retrieved runbooks link, first; `llm_rca` keeps them."""
        try:
            names: set[str] | None = set(load_configured_catalogue(self._settings).actions)
        except RemediationConfigError as exc:
            log.warning("the action catalogue does not load, runbook links are not checked against it: %s", exc)
            names = None
        return link_catalogue_actions(rca, alerts, runbooks_dir(self._settings), known_actions=names)

    @activity.defn(name="llm_diagnose")
    async def llm_diagnose(self, data: LLMDiagnoseInput) -> RootCauseAnalysis:
        requests = "vigil_llm_requests_total"
        about = "LLM RCA requests by outcome."
        try:
            with _stage("llm"):
                rca = await with_heartbeat(
                    llm_rca(self._settings, data.diagnosis, data.title),
                    lambda: f"waiting for {self._settings.llm_model}",
                )
        except LLMError as exc:
            _count(requests, about, outcome="unavailable" if exc.retryable else "rejected")
            raise ApplicationError(
                str(exc), type=LLM_REJECTED if not exc.retryable else "LLMUnavailable", non_retryable=not exc.retryable
            ) from exc
        _count(requests, about, outcome="used" if rca.source == "llm" else "no_valid_citation")
        if rca.dropped:
            _count("vigil_rca_dropped_claims_total", "LLM claims dropped by the citation verifier.", len(rca.dropped))
        await self._store.save_diagnosis(data.incident_id, rca)
        if rca.source == "llm":
            _count("vigil_diagnoses_total", "Diagnoses written.", source="llm", category=rca.category.value)
        return rca

    @activity.defn(name="answer_question")
    async def answer_question(self, query: ChatQuery) -> ChatAnswer:
        passages = await asyncio.to_thread(lambda: retrieve(self._knowledge.base(), query))
        reply = await with_heartbeat(answer(self._settings, query, passages), lambda: "answering")
        _count("vigil_docqa_answers_total", "DocQA answers by how they were written.", source=reply.source)
        return reply

    @activity.defn(name="index_resolved_incident")
    async def index_resolved_incident(self, incident: ResolvedIncident) -> None:
        await asyncio.to_thread(lambda: self._knowledge.base().index_incident(incident))
