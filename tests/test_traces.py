"""Spans as evidence: the call graph, self time, own vs propagated errors and blame (pure), the bundle's `traces`
key, and OTLP/HTTP intake on the real app with real PostgreSQL (JSON and protobuf, gzip, partial success, junk,
auth), read back through the window query, the blame endpoint and the diagnosis activity's gather."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import Status as OtelStatus
from opentelemetry.trace import StatusCode as OtelStatusCode
from prometheus_client import REGISTRY
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.diagnosis import DiagnosisActivities
from api.app import create_app
from eval.traces import REGIMES, evaluate
from tests.conftest import ApiFactory, make_settings
from tests.support import eventually, free_port
from vigil.analysis.bundle import BundleError, parse_bundle
from vigil.analysis.traces import (
    Span,
    SpanKind,
    blame,
    call_graph,
    error_origins,
    percentile,
    self_time_ms,
)
from vigil.models import AlertRecord, AlertSource, AlertStatus, DiagnoseInput, Severity
from vigil.otlp import Status
from vigil.rca.retrieval import IncidentKnowledge
from vigil.settings import Settings
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import Store, migrate_database

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ONSET = T0 + timedelta(minutes=5)
KIND_NUMBERS = {
    SpanKind.UNSPECIFIED: 0,
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
"""OTLP's SpanKind numbers (opentelemetry/proto/trace/v1/trace.proto)."""
TOKEN = "traces-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ms(value: float) -> timedelta:
    return timedelta(milliseconds=value)


def span(
    trace: int,
    sid: int,
    service: str,
    start: datetime,
    duration_ms: float,
    *,
    parent: int | None = None,
    kind: SpanKind = SpanKind.SERVER,
    error: bool = False,
    **attributes: str,
) -> Span:
    return Span(
        trace_id=f"{trace:032x}",
        span_id=f"{sid:016x}",
        parent_span_id=None if parent is None else f"{parent:016x}",
        service=service,
        name=f"{service} op",
        kind=kind,
        start=start,
        end=start + ms(duration_ms),
        error=error,
        attributes={key.replace("_", "."): value for key, value in attributes.items()},
    )


OWN_MS = 3.0  # each service: 2 ms before its call, 1 ms after
NETWORK_MS = 1.0  # each client span: 0.5 ms either side of the callee's server span


def request(
    trace: int, at: datetime, chain: list[str], db: str, db_ms: float, *, fail_at: str | None = None
) -> list[Span]:
    """One request down `chain` (server span + client span per hop), the last service calling the un-instrumented
    database `db` (a client span with db.system and server.address). `fail_at`: the service whose server span
    fails on its own, or `db` for a failing query; the failure propagates to every caller above."""
    durations = [OWN_MS + db_ms]
    for _ in chain[:-1]:
        durations.insert(0, OWN_MS + NETWORK_MS + durations[0])
    failing: int | None = None  # the deepest hop that fails: it and every hop above it
    if fail_at == db:
        failing = len(chain)
    elif fail_at:
        failing = chain.index(fail_at)
    spans: list[Span] = []
    start = at
    parent: int | None = None
    for hop, service in enumerate(chain):
        failed = failing is not None and hop <= failing
        server_id = 2 * hop + 1
        spans.append(span(trace, server_id, service, start, durations[hop], parent=parent, error=failed))
        client_start = start + ms(2)
        client_id = server_id + 1
        if hop + 1 < len(chain):
            spans.append(
                span(
                    trace,
                    client_id,
                    service,
                    client_start,
                    durations[hop + 1] + NETWORK_MS,
                    parent=server_id,
                    kind=SpanKind.CLIENT,
                    error=failing is not None and hop + 1 <= failing,
                    peer_service=chain[hop + 1],
                )
            )
            start, parent = client_start + ms(NETWORK_MS / 2), client_id
        else:
            db_span = span(
                trace,
                client_id,
                service,
                client_start,
                db_ms,
                parent=server_id,
                kind=SpanKind.CLIENT,
                error=fail_at == db,
                db_system="postgresql",
                server_address=db,
            )
            spans.append(db_span)
    return spans


def traffic(
    chains: list[list[str]], db: str, *, before: int, after: int, db_ms_after: float, fail_every: int, fail_at: str
) -> list[Span]:
    """`before` healthy requests before ONSET, then `after` requests of which every `fail_every`-th fails at
    `fail_at` and the database answers in `db_ms_after`. Requests alternate over `chains`."""
    spans: list[Span] = []
    for n in range(before + after):
        late = n >= before
        at = (ONSET if late else T0) + timedelta(seconds=n % max(before, after, 1))
        failure = fail_at if late and fail_every and n % fail_every == 0 else None
        spans += request(n + 1, at, chains[n % len(chains)], db, db_ms_after if late else 5.0, fail_at=failure)
    return spans


# --- the call graph, self time, own vs propagated errors ----------------------------------------------------------


def test_the_call_graph_has_service_edges_and_the_uninstrumented_database() -> None:
    spans = request(1, T0, ["frontend", "checkout", "payments"], "payments-db", 5.0)
    graph = call_graph(spans)
    assert graph.nodes == ["checkout", "frontend", "payments", "payments-db"]
    assert [(e.caller, e.callee) for e in graph.edges] == [
        ("checkout", "payments"),
        ("frontend", "checkout"),
        ("payments", "payments-db"),
    ]
    edge = {e.id: e for e in graph.edges}["trace:edge:payments->payments-db"]
    assert (edge.after.calls, edge.after.p50_ms, edge.before.calls) == (1, 5.0, 0)


def test_edge_statistics_before_and_after_the_onset() -> None:
    spans = traffic(
        [["checkout", "payments"]],
        "payments-db",
        before=20,
        after=20,
        db_ms_after=50.0,
        fail_every=4,
        fail_at="payments",
    )
    edge = {e.id: e for e in call_graph(spans, ONSET).edges}["trace:edge:checkout->payments"]
    assert (edge.before.calls, edge.before.errors, edge.before.error_rate) == (20, 0, 0.0)
    assert (edge.after.calls, edge.after.errors, edge.after.own_errors, edge.after.error_rate) == (20, 5, 5, 0.25)
    assert edge.before.p95_ms == pytest.approx(OWN_MS + 5.0)
    assert edge.after.p50_ms == pytest.approx(OWN_MS + 50.0)
    db_edge = {e.id: e for e in call_graph(spans, ONSET).edges}["trace:edge:payments->payments-db"]
    assert (db_edge.after.errors, db_edge.after.own_errors) == (0, 0)


def test_self_time_subtracts_the_union_of_children_clipped_to_the_span() -> None:
    parent = span(1, 1, "api", T0, 100)
    children = [
        span(1, 2, "api", T0 + ms(10), 30, parent=1, kind=SpanKind.CLIENT, peer_service="a"),
        span(1, 3, "api", T0 + ms(30), 30, parent=1, kind=SpanKind.CLIENT, peer_service="b"),  # overlaps: 10..60
        span(1, 4, "api", T0 + ms(90), 30, parent=1, kind=SpanKind.CLIENT, peer_service="c"),  # clipped at 100
    ]
    times = self_time_ms([parent, *children])
    assert times[parent.span_id] == pytest.approx(100 - 50 - 10)
    assert times[children[0].span_id] == pytest.approx(30)


def test_an_error_is_own_where_it_starts_and_propagated_above() -> None:
    spans = request(1, T0, ["frontend", "checkout", "payments"], "payments-db", 5.0, fail_at="payments-db")
    origins = error_origins(spans)
    own = [s for s in spans if origins.get(s.span_id) == "own"]
    assert [(s.service, s.kind, s.attributes.get("server.address")) for s in own] == [
        ("payments", SpanKind.CLIENT, "payments-db")
    ]
    assert sum(origin == "propagated" for origin in origins.values()) == 5  # 3 servers + 2 client spans above
    handled = request(2, T0, ["checkout", "payments"], "payments-db", 5.0, fail_at="checkout")
    assert [s.service for s in handled if error_origins(handled).get(s.span_id) == "own"] == ["checkout"]


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)


# --- blame ----------------------------------------------------------------------------------------------------


def test_blame_ranks_the_failing_callee_above_the_callers_that_propagate() -> None:
    spans = traffic(
        [["frontend", "checkout", "payments"]],
        "payments-db",
        before=40,
        after=40,
        db_ms_after=5.0,
        fail_every=2,
        fail_at="payments-db",
    )
    ranked = blame(spans, ONSET)
    first = ranked[0]
    assert first.service == "payments-db"
    assert first.evidence_id == "trace:edge:payments->payments-db"
    assert first.chain == ["frontend", "checkout", "payments", "payments-db"]
    assert first.own_error_rate_before == 0.0
    assert first.own_error_rate_after == 0.5
    assert first.error_score > 0.45
    assert "errors 50% on calls from payments → payments-db after onset, 0% before; own errors" in first.reason
    callers = {b.service: b for b in ranked[1:]}
    assert set(callers) == {"frontend", "checkout", "payments"}
    for caller in callers.values():
        assert caller.error_score == 0.0
        assert caller.score < 0.1 < first.score
    assert callers["payments"].propagated_error_rate_after == 0.5
    assert "propagated from callees" in callers["checkout"].reason


def test_blame_a_service_that_fails_on_its_own_in_a_three_tier_call() -> None:
    spans = traffic(
        [["frontend", "checkout", "payments"]],
        "payments-db",
        before=30,
        after=30,
        db_ms_after=5.0,
        fail_every=3,
        fail_at="payments",
    )
    first, *rest = blame(spans, ONSET)
    assert (first.service, first.evidence_id) == ("payments", "trace:edge:checkout->payments")
    assert first.chain == ["frontend", "checkout", "payments"]
    assert all(b.score < first.score / 5 for b in rest)


def test_blame_a_slow_database_behind_two_services() -> None:
    spans = traffic(
        [["frontend", "orders"], ["frontend", "payments"]],
        "main-db",
        before=40,
        after=40,
        db_ms_after=300.0,
        fail_every=0,
        fail_at="",
    )
    first, *rest = blame(spans, ONSET)
    assert first.service == "main-db"
    assert first.latency_score > 0.9
    assert first.error_score == 0.0
    assert sorted(first.evidence_ids) == ["trace:edge:orders->main-db", "trace:edge:payments->main-db"]
    assert first.self_ms_per_request_before == pytest.approx(5.0)
    assert first.self_ms_per_request_after == pytest.approx(300.0)
    assert "p95 300 ms on calls from orders → main-db after onset, 5.0 ms before" in first.reason
    assert "(100% of the added latency)" in first.reason
    assert first.chain[0] == "frontend"
    assert first.chain[-1] == "main-db"
    assert {b.service for b in rest} == {"frontend", "orders", "payments"}
    assert all(b.score < 0.01 for b in rest)


def test_a_caller_timing_out_on_a_slow_callee_blames_the_callee() -> None:
    spans: list[Span] = []
    for n in range(40):
        late = n >= 20
        at = (ONSET if late else T0) + timedelta(seconds=n % 20)
        charge_ms = 300.0 if late else 10.0
        timeout = late  # checkout gives up after 100 ms; payments finishes its work anyway
        client_ms = 100.0 if timeout else charge_ms + 1
        spans += [
            span(n + 1, 1, "checkout", at, client_ms + 3, error=timeout),
            span(n + 1, 2, "checkout", at + ms(2), client_ms, parent=1, kind=SpanKind.CLIENT, error=timeout),
            span(n + 1, 3, "payments", at + ms(2.5), charge_ms, parent=2),
        ]
    assert error_origins(spans[-3:]) == {spans[-3].span_id: "propagated", spans[-2].span_id: "propagated"}
    first, second = blame(spans, ONSET)
    assert (first.service, first.evidence_id) == ("payments", "trace:edge:checkout->payments")
    assert first.latency_score > 0.9
    assert second.service == "checkout"
    assert second.score == 0.0
    assert "propagated from callees" in second.reason


def test_blame_without_a_baseline_scores_own_errors_only() -> None:
    spans = traffic(
        [["checkout", "payments"]], "payments-db", before=0, after=20, db_ms_after=5.0, fail_every=2, fail_at="payments"
    )
    ranked = blame(spans, None)
    assert ranked[0].service == "payments"
    assert ranked[0].own_error_rate_before is None
    assert ranked[0].latency_score == 0.0
    assert ranked[0].error_score == pytest.approx(10 / 21, abs=1e-4)
    assert "in the window" in ranked[0].reason


def test_duplicates_cycles_and_orphans_do_not_break_the_analysis() -> None:
    spans = request(1, T0, ["checkout", "payments"], "db", 5.0)
    looped = [
        span(9, 1, "a", T0, 10, parent=2),
        span(9, 2, "b", T0, 10, parent=1),
        span(9, 3, "c", T0, 10, parent=3),
        span(9, 4, "d", T0, 10, parent=77),
    ]
    ranked = blame([*spans, *spans, *looped], T0)
    assert {b.service for b in ranked} == {"checkout", "payments", "db", "a", "b", "c", "d"}
    assert {e.id: e.after.calls for e in call_graph([*spans, *spans]).edges}["trace:edge:checkout->payments"] == 1
    assert blame([], None) == []


# --- the bundle -------------------------------------------------------------------------------------------------


def otlp_json(spans: list[Span]) -> dict[str, Any]:
    """An OTLP/JSON ExportTraceServiceRequest, as an OTLP/HTTP JSON exporter writes it (hex ids, ns as strings)."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_service.setdefault(s.service, []).append(
            {
                "traceId": s.trace_id,
                "spanId": s.span_id,
                **({"parentSpanId": s.parent_span_id} if s.parent_span_id else {}),
                "name": s.name,
                "kind": KIND_NUMBERS[s.kind],
                "startTimeUnixNano": str(int(s.start.timestamp() * 1e6) * 1000),
                "endTimeUnixNano": str(int(s.end.timestamp() * 1e6) * 1000),
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in s.attributes.items()]
                + [{"key": "http.route", "value": {"stringValue": "/dropped"}}],
                "status": {"code": 2, "message": "boom"} if s.error else {},
            }
        )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": items}],
            }
            for service, items in by_service.items()
        ]
    }


def otlp_proto(spans: list[Span]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for s in spans:
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=s.service)))
        proto = resource_spans.scope_spans.add().spans.add()
        proto.trace_id = bytes.fromhex(s.trace_id)
        proto.span_id = bytes.fromhex(s.span_id)
        if s.parent_span_id:
            proto.parent_span_id = bytes.fromhex(s.parent_span_id)
        proto.name = s.name
        proto.kind = cast(Any, KIND_NUMBERS[s.kind])
        proto.start_time_unix_nano = int(s.start.timestamp() * 1e6) * 1000
        proto.end_time_unix_nano = int(s.end.timestamp() * 1e6) * 1000
        proto.status.code = cast(Any, 2 if s.error else 0)
        for key, value in s.attributes.items():
            proto.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
        proto.attributes.append(KeyValue(key="http.response.status_code", value=AnyValue(int_value=503)))
        proto.attributes.append(KeyValue(key="thread.id", value=AnyValue(int_value=7)))
    return request


def test_the_bundle_takes_spans_in_otlp_json_and_model_form() -> None:
    spans = request(1, T0, ["checkout", "payments"], "payments-db", 5.0, fail_at="payments-db")
    bundle = parse_bundle({"traces": [otlp_json(spans[:3]), *(s.model_dump(mode="json") for s in spans[3:])]})
    assert [s.span_id for s in bundle.traces] == [s.span_id for s in spans]
    assert bundle.traces[0].attributes == spans[0].attributes  # http.route is not kept
    assert [s.error for s in bundle.traces] == [s.error for s in spans]
    bad = otlp_json(spans[:1])
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "xyz"
    with pytest.raises(BundleError, match=r"traces.*traceId is not 32 hex digits"):
        parse_bundle({"traces": [bad]})
    with pytest.raises(BundleError, match="ends before it starts"):
        parse_bundle({"traces": [{**spans[0].model_dump(mode="json"), "end": "2026-11-22T09:00:00Z"}]})


# --- OTLP/HTTP intake on the real app ---------------------------------------------------------------------------


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def spans_counted(fmt: str, outcome: str) -> float:
    return sample("vigil_spans_received_total", {"format": fmt, "outcome": outcome})


def requests_counted(fmt: str, outcome: str) -> float:
    return sample("vigil_trace_requests_total", {"format": fmt, "outcome": outcome})


@pytest.fixture
def svc() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"


def fresh(spans: list[Span], svc: str) -> list[Span]:
    """The spans with services and trace ids unique to this test (the session's database is shared)."""
    salt = uuid.uuid4().hex[:8]
    return [
        s.model_copy(
            update={
                "service": f"{svc}-{s.service}",
                "trace_id": salt + s.trace_id[8:],
                "attributes": {
                    k: f"{svc}-{v}" if k in ("peer.service", "server.address") else v for k, v in s.attributes.items()
                },
            }
        )
        for s in spans
    ]


async def read_back(api: ApiFactory, service: str, **params: str) -> list[Span]:
    window = {"start": "2026-11-22T09:00:00Z", "end": "2026-11-22T11:00:00Z"}
    response = await api().get("/api/v1/traces", params={"service": service, **window, **params})
    assert response.status_code == 200, response.text
    return [Span.model_validate(row) for row in response.json()]


async def test_otlp_json_export_is_stored_with_partial_success(api: ApiFactory, svc: str) -> None:
    spans = fresh(request(1, T0, ["checkout", "payments"], "db", 5.0, fail_at="db"), svc)
    body = otlp_json(spans)
    body["resourceSpans"][0]["scopeSpans"][0]["spans"].append({"traceId": "00", "spanId": "11", "name": "bad"})
    before = (spans_counted("otlp_json", "accepted"), spans_counted("otlp_json", "rejected"))
    partial = requests_counted("otlp_json", "partial")
    response = await api().post("/v1/traces", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()["partialSuccess"]
    assert answer["rejectedSpans"] == "1"
    assert "traceId is not 32 hex digits" in answer["errorMessage"]
    assert spans_counted("otlp_json", "accepted") == before[0] + len(spans)
    assert spans_counted("otlp_json", "rejected") == before[1] + 1
    assert requests_counted("otlp_json", "partial") == partial + 1

    stored = await read_back(api, f"{svc}-checkout")  # the whole trace: payments' spans come along
    assert sorted((s.span_id, s.service) for s in stored) == sorted((s.span_id, s.service) for s in spans)
    sent = [s.model_copy(update={"status_message": "boom" if s.error else None}) for s in spans]
    assert {s.span_id: s for s in stored} == {s.span_id: s for s in sent}


async def test_otlp_protobuf_gzip_export_is_stored(api: ApiFactory, svc: str) -> None:
    spans = fresh(request(2, T0, ["checkout", "payments"], "db", 5.0), svc)
    body = gzip.compress(otlp_proto(spans).SerializeToString())
    accepted = spans_counted("otlp_protobuf", "accepted")
    response = await api().post(
        "/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")
    assert spans_counted("otlp_protobuf", "accepted") == accepted + len(spans)
    stored = {s.span_id: s for s in await read_back(api, f"{svc}-payments")}
    assert set(stored) == {s.span_id for s in spans}
    db_call = stored[spans[-1].span_id]
    assert db_call.kind == SpanKind.CLIENT
    assert db_call.parent_span_id == spans[-1].parent_span_id
    assert db_call.attributes == {**spans[-1].attributes, "http.response.status_code": "503"}  # thread.id dropped
    assert db_call.start == spans[-1].start
    assert db_call.end == spans[-1].end


async def test_stored_spans_are_blamed_through_the_api(api: ApiFactory, svc: str) -> None:
    spans = fresh(
        traffic(
            [["frontend", "checkout", "payments"]],
            "payments-db",
            before=10,
            after=10,
            db_ms_after=5.0,
            fail_every=2,
            fail_at="payments",
        ),
        svc,
    )
    response = await api().post("/v1/traces", json=otlp_json(spans))
    assert response.status_code == 200, response.text
    params = {
        "service": f"{svc}-frontend",
        "start": T0.isoformat(),
        "end": (ONSET + timedelta(minutes=5)).isoformat(),
        "onset": ONSET.isoformat(),
    }
    analysis = await api().get("/api/v1/traces/blame", params=params)
    assert analysis.status_code == 200, analysis.text
    result = analysis.json()
    assert result["spans"] == len(spans)
    assert result["blame"][0]["service"] == f"{svc}-payments"
    assert result["blame"][0]["evidence_id"] == f"trace:edge:{svc}-checkout->{svc}-payments"
    bad_onset = await api().get("/api/v1/traces/blame", params={**params, "onset": "2020-01-01T00:00:00Z"})
    assert bad_onset.status_code == 422
    assert bad_onset.json()["detail"][0]["loc"] == ["query", "onset"]


def status_of(response: Any) -> tuple[int, str]:
    if response.headers["content-type"] == "application/x-protobuf":
        status = Status.FromString(response.content)
        return status.code, status.message
    body = response.json()
    return body.get("code", 0), body.get("message", "")


@pytest.mark.parametrize(
    ("headers", "body", "code", "reason", "fmt", "says"),
    [
        (
            {"Content-Type": "application/x-protobuf"},
            b"\xff\xff\xff",
            400,
            "invalid_payload",
            "otlp_protobuf",
            "not a protobuf",
        ),
        ({"Content-Type": "application/json"}, b"{nope", 400, "invalid_payload", "otlp_json", "not JSON"),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400, "invalid_payload", "otlp_json", "JSON object"),
        (
            {"Content-Type": "application/json"},
            b'{"resourceSpans": 3}',
            400,
            "invalid_payload",
            "otlp_json",
            "not an array",
        ),
        (
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            b"not gzip",
            400,
            "invalid_payload",
            "otlp_json",
            "gzip",
        ),
        (
            {"Content-Type": "application/json"},
            b'{"resourceSpans": ' + b"[" * 100 + b"]" * 100 + b"}",
            400,
            "too_deep",
            "otlp_json",
            "nest deeper than 64 levels",
        ),
        ({"Content-Type": "text/plain"}, b"x", 415, "unsupported_media_type", "otlp_json", "application/x-protobuf"),
        ({}, b"{}", 415, "unsupported_media_type", "otlp_json", "content-type"),
    ],
    ids=["protobuf-junk", "json-junk", "json-array", "json-shape", "bad-gzip", "too-deep", "text", "untyped"],
)
async def test_junk_is_refused_with_a_status_and_counted(
    api: ApiFactory, headers: dict[str, str], body: bytes, code: int, reason: str, fmt: str, says: str
) -> None:
    before = requests_counted(fmt, reason)
    response = await api().post("/v1/traces", content=body, headers=headers)
    assert response.status_code == code, response.text
    grpc_code, message = status_of(response)
    assert grpc_code == 3
    assert says in message
    assert requests_counted(fmt, reason) == before + 1


async def test_no_usable_span_is_a_400_and_the_spans_are_counted(api: ApiFactory, svc: str) -> None:
    good = fresh(request(3, T0, ["checkout"], "db", 5.0), svc)[0]
    body = otlp_json([good])
    item = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    item["endTimeUnixNano"] = "1"
    rejected = spans_counted("otlp_json", "rejected")
    response = await api().post("/v1/traces", json=body)
    assert response.status_code == 400, response.text
    assert "endTimeUnixNano is before startTimeUnixNano" in response.json()["message"]
    assert spans_counted("otlp_json", "rejected") == rejected + 1
    assert await read_back(api, good.service) == []


async def test_an_empty_export_is_accepted(api: ApiFactory) -> None:
    response = await api().post(
        "/v1/traces",
        content=ExportTraceServiceRequest().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200, response.text
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()


async def test_limits_and_auth_like_the_log_intake(api: ApiFactory, svc: str) -> None:
    spans = fresh(request(4, T0, ["checkout", "payments"], "db", 5.0), svc)
    client = api(api_token=TOKEN, max_log_lines_per_request=2)
    unauthorized = requests_counted("otlp_json", "unauthorized")
    response = await client.post("/v1/traces", json=otlp_json(spans))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert status_of(response)[0] == 16  # UNAUTHENTICATED
    assert requests_counted("otlp_json", "unauthorized") == unauthorized + 1
    assert (await client.get("/api/v1/traces", params={"service": svc})).status_code == 401
    too_many = await client.post("/v1/traces", json=otlp_json(spans), headers=AUTH)
    assert too_many.status_code == 413
    assert "4 spans in one request (limit 2)" in too_many.json()["message"]
    small = api(api_token=TOKEN, max_payload_bytes=64)
    too_large = await small.post(
        "/v1/traces", content=b"{" + b" " * 100 + b"}", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert too_large.status_code == 413
    ok = await client.post("/v1/traces", json=otlp_json(spans[:2]), headers=AUTH)
    assert ok.status_code == 200, ok.text
    read = await client.get(
        "/api/v1/traces", params={"service": spans[0].service, "start": T0.isoformat()}, headers=AUTH
    )
    assert [row["span_id"] for row in read.json()] == [s.span_id for s in spans[:2]]


@pytest.fixture
async def served(temporal_client: Client, store: Store, database_url: str) -> AsyncIterator[str]:
    """The real app on uvicorn on a free local port (an OTLP exporter speaks real HTTP); yields its URL."""
    app = create_app(make_settings(database_url, temporal_client, api_token=TOKEN), client=temporal_client, store=store)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0), lambda _: server.started or serving.done(), timeout=15)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


async def test_the_opentelemetry_sdk_exporter_ships_here(served: str, store: Store, svc: str) -> None:
    """OpenTelemetry's own OTLP/HTTP exporter (protobuf, gzip, bearer token) sends what its SDK recorded."""
    recorded = InMemorySpanExporter()

    def tracer(service: str) -> otel_trace.Tracer:
        provider = TracerProvider(resource=Resource.create({"service.name": f"{svc}-{service}"}))
        provider.add_span_processor(SimpleSpanProcessor(recorded))
        return provider.get_tracer("vigil-test")

    checkout, payments = tracer("checkout"), tracer("payments")
    failed = OtelStatus(OtelStatusCode.ERROR, "deadlock detected")
    with checkout.start_as_current_span("POST /pay", kind=OtelKind.SERVER) as entry:
        with checkout.start_as_current_span("POST", kind=OtelKind.CLIENT) as call:
            call.set_attribute("peer.service", f"{svc}-payments")
            with payments.start_as_current_span("POST /charge", kind=OtelKind.SERVER) as charge:
                with payments.start_as_current_span("INSERT", kind=OtelKind.CLIENT) as query:
                    query.set_attributes({"db.system.name": "postgresql", "server.address": f"{svc}-db"})
                    query.set_status(failed)
                charge.set_status(failed)
            call.set_status(failed)
        entry.set_status(failed)
    spans = recorded.get_finished_spans()

    def exporter(token: str) -> OTLPSpanExporter:
        return OTLPSpanExporter(
            endpoint=f"{served}/v1/traces",
            headers={"Authorization": f"Bearer {token}"},
            compression=Compression.Gzip,
            timeout=10,
        )

    assert await asyncio.to_thread(exporter("wrong").export, spans) == SpanExportResult.FAILURE
    assert await asyncio.to_thread(exporter(TOKEN).export, spans) == SpanExportResult.SUCCESS
    now = datetime.now(UTC)
    stored = await store.spans_window([f"{svc}-checkout"], now - timedelta(minutes=5), now + timedelta(minutes=1), 100)
    assert sorted(s.name for s in stored) == ["INSERT", "POST", "POST /charge", "POST /pay"]
    assert len({s.trace_id for s in stored}) == 1
    edges = {e.id for e in call_graph(stored).edges}
    assert edges == {
        f"trace:edge:{svc}-checkout->{svc}-payments",
        f"trace:edge:{svc}-payments->{svc}-db",
    }
    first = blame(stored, None)[0]
    assert (first.service, first.evidence_id) == (f"{svc}-db", f"trace:edge:{svc}-payments->{svc}-db")
    assert first.chain == [f"{svc}-checkout", f"{svc}-payments", f"{svc}-db"]


@pytest.fixture
async def stoppable_store(tmp_path: Path) -> AsyncIterator[tuple[Store, Any]]:
    """A store on a private PostgreSQL that the test may stop."""
    server = start_embedded_postgres(tmp_path / "pg")
    try:
        await migrate_database(server.url)
        async with await Store.open(server.url, max_size=2) as store:
            yield store, server
    finally:
        if server.is_running():
            server.stop()


async def test_postgres_down_is_a_503_the_exporter_retries(
    temporal_client: Client, stoppable_store: tuple[Store, Any]
) -> None:
    store, server = stoppable_store
    app = create_app(make_settings(server.url, temporal_client), client=temporal_client, store=store)
    server.stop()
    before = requests_counted("otlp_protobuf", "database_unavailable")
    body = otlp_proto(request(7, T0, ["checkout"], "db", 5.0)).SerializeToString()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as client:
        response = await client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert Status.FromString(response.content).code == 14  # UNAVAILABLE
    assert requests_counted("otlp_protobuf", "database_unavailable") == before + 1


# --- storage: window sampling, retention; the diagnosis gathers the incident's traces ----------------------------


async def test_the_window_samples_whole_traces_over_the_limit(store: Store, svc: str) -> None:
    spans = fresh(traffic([["a", "b"]], "db", before=10, after=10, db_ms_after=5.0, fail_every=0, fail_at=""), svc)
    await store.insert_spans(spans, received_at=datetime.now(UTC))
    start, end = T0 - timedelta(minutes=1), ONSET + timedelta(minutes=1)
    everything = await store.spans_window([f"{svc}-a"], start, end, 10_000)
    assert sorted(s.span_id + s.trace_id for s in everything) == sorted(s.span_id + s.trace_id for s in spans)
    assert [s.start for s in everything] == sorted(s.start for s in everything)
    sampled = await store.spans_window([f"{svc}-b"], start, end, 22)
    by_hash = sorted({s.trace_id for s in spans}, key=lambda trace: hashlib.md5(trace.encode()).hexdigest())
    expected = by_hash[:5]  # 4 spans a trace: 5 whole traces fit in 22
    assert sorted({s.trace_id for s in sampled}) == sorted(expected)
    assert len(sampled) == 20
    assert await store.spans_window([f"{svc}-nobody"], start, end, 100) == []


async def test_retention_deletes_spans_that_started_before_the_cutoff(store: Store, svc: str) -> None:
    long_ago = T0.replace(year=2001) - T0
    spans = [
        s.model_copy(update={"start": s.start + long_ago, "end": s.end + long_ago})
        for s in fresh(traffic([["a"]], "db", before=10, after=0, db_ms_after=5.0, fail_every=0, fail_at=""), svc)
    ]
    await store.insert_spans(spans, received_at=datetime.now(UTC))
    cutoff = T0 + long_ago + timedelta(seconds=5)
    deleted = await store.delete_spans_before(cutoff)
    assert deleted >= 5 * 2
    left = await store.spans_window([f"{svc}-a"], cutoff - timedelta(days=1), cutoff + timedelta(days=1), 10_000)
    assert len(left) == len(spans) - 5 * 2
    assert min(s.start for s in left) >= cutoff


async def test_the_diagnosis_gathers_the_traces_of_the_alerting_service(store: Store, svc: str) -> None:
    spans = fresh(request(5, T0, ["checkout", "payments"], "db", 5.0, fail_at="db"), svc)
    unrelated = fresh(request(6, T0, ["other"], "db", 5.0), svc)
    await store.insert_spans(spans + unrelated, received_at=datetime.now(UTC))
    alert = AlertRecord(
        fingerprint=uuid.uuid4().hex,
        source=AlertSource.ALERTMANAGER,
        status=AlertStatus.FIRING,
        severity=Severity.CRITICAL,
        summary="checkout errors",
        labels={"alertname": "CheckoutErrors", "service": f"{svc}-checkout"},
        starts_at=T0 + timedelta(minutes=1),
        first_seen=T0 + timedelta(minutes=1),
        last_seen=T0 + timedelta(minutes=1),
    )
    data = DiagnoseInput(incident_id=f"incident-{svc}", title="t", alerts=[alert], opened_at=T0 + timedelta(minutes=1))
    activities = DiagnosisActivities(store, cast(IncidentKnowledge, None), Settings())
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, current_attempt_scheduled_time=T0 + timedelta(minutes=2))
    bundle = await environment.run(activities._gather, data)
    assert sorted(s.span_id + s.service for s in bundle.traces) == sorted(s.span_id + s.service for s in spans)
    assert blame(bundle.traces, None)[0].service == f"{svc}-db"


def test_blame_finds_faults_injected_into_random_call_trees() -> None:
    """A regression guard over eval.traces' synthetic scenarios (noise, skew, dropped spans; see its docstring)."""
    harsh = next(regime for regime in REGIMES if regime.name == "harsh")
    scores = evaluate(range(2000, 2010), harsh)
    assert scores["top1"] >= 0.9
    assert scores["top3"] == 1.0
