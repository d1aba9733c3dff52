"""Spans as evidence: the call graph between services, per-edge errors and latency before and after an onset, and
`blame`, which ranks the services (and un-instrumented callees such as a database host) whose *own* behaviour
changed, so that a failing or slow callee is named instead of the callers that only pass its failure on.

Vocabulary:
- A span's **node** is the service it measures: its own service, except a client/producer span with no child span
  (the callee is not instrumented) that names its peer (`peer.service`, `server.address`, ...): it measures that
  peer, e.g. a database host.
- A **visit** is one call into a node: the span where a trace enters the node and the node's spans below it. An
  edge `caller -> callee` is the visits into `callee` whose entry span's parent belongs to `caller`.
- **Self time** of a span: its duration minus the union of its children's intervals (clipped to the span), so
  the time spent waiting on a callee counts for the callee, not for the caller.
- An error is **own** when the span failed and none of its children did; a span that failed while a child failed
  is **propagating** its child's error, and so is one that gave up while a callee in another node was still
  running (a timeout: the callee's slowness is the cause, and its self time shows it).

Span attributes are untrusted data; they are only compared and counted, never interpreted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator, model_validator

MAX_NAME_CHARS = 1024
MAX_ATTRIBUTE_CHARS = 1024
MAX_SERVICE_CHARS = 200

KEPT_ATTRIBUTES = (
    "peer.service",
    "server.address",
    "server.port",
    "net.peer.name",
    "db.system",
    "db.system.name",
    "db.namespace",
    "db.name",
    "http.request.method",
    "http.response.status_code",
    "http.status_code",
    "rpc.system",
    "rpc.service",
    "rpc.grpc.status_code",
    "messaging.system",
    "messaging.destination.name",
    "error.type",
)
"""The span attributes kept (OpenTelemetry semantic conventions, current and older names): who was called and how
the call ended. Everything else a span carries is dropped at intake."""

PEER_ATTRIBUTES = (
    "peer.service",
    "server.address",
    "net.peer.name",
    "db.system.name",
    "db.system",
    "messaging.system",
    "rpc.service",
)
"""Attributes naming the callee of a client/producer span, most specific first."""

EDGE_EVIDENCE = "trace:edge:"
SERVICE_EVIDENCE = "trace:service:"
MAX_ANCESTRY = 10_000
"""Parent hops followed at most: bounds the walk over a (malformed) cyclic or absurdly deep parent chain."""


class SpanKind(StrEnum):
    UNSPECIFIED = "unspecified"
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


OUTGOING = frozenset({SpanKind.CLIENT, SpanKind.PRODUCER})


class Span(BaseModel):
    """One span: a timed operation of one service within one trace. Ids are lowercase hex in OTLP."""

    trace_id: str = Field(min_length=1, max_length=64)
    span_id: str = Field(min_length=1, max_length=64)
    parent_span_id: str | None = Field(default=None, max_length=64)
    service: str = Field(min_length=1, max_length=MAX_SERVICE_CHARS)
    name: str = Field(default="", max_length=MAX_NAME_CHARS)
    kind: SpanKind = SpanKind.INTERNAL
    start: datetime
    end: datetime
    error: bool = Field(default=False, description="The span's status is ERROR.")
    status_message: str | None = Field(default=None, max_length=MAX_ATTRIBUTE_CHARS)
    attributes: dict[str, str] = Field(default_factory=dict, description="The `KEPT_ATTRIBUTES` the span had.")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    @field_validator("parent_span_id")
    @classmethod
    def _no_empty_parent(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _ends_after_start(self) -> Span:
        if self.end < self.start:
            raise ValueError("span ends before it starts")
        return self

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000

    @property
    def peer(self) -> str | None:
        """The callee this client/producer span names, if any."""
        if self.kind not in OUTGOING:
            return None
        return next((self.attributes[key] for key in PEER_ATTRIBUTES if self.attributes.get(key)), None)


# --- results --------------------------------------------------------------------------------------------------


class CallStats(BaseModel):
    """Calls over one edge in one period (before or after the onset)."""

    calls: int = 0
    errors: int = Field(default=0, description="Calls that ended in an error.")
    own_errors: int = Field(default=0, description="Calls in which the callee itself failed (not a callee of it).")
    error_rate: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None


class EdgeStats(BaseModel):
    id: str = Field(description="Evidence id, 'trace:edge:<caller>-><callee>'.")
    caller: str
    callee: str
    before: CallStats
    after: CallStats


class CallGraph(BaseModel):
    onset: datetime | None
    nodes: list[str] = Field(description="Services and un-instrumented callees (peers) seen in the spans.")
    edges: list[EdgeStats]


class ServiceBlame(BaseModel):
    """How much one node's own behaviour changed at the onset, and the evidence for it."""

    service: str = Field(description="A service, or an un-instrumented callee named by its callers (a DB host).")
    score: float = Field(ge=0.0, le=1.0, description="1 - (1 - error_score)(1 - latency_score).")
    reason: str
    evidence_id: str = Field(description="The edge that shows it best ('trace:edge:a->b'), or 'trace:service:x'.")
    evidence_ids: list[str] = Field(description="Every edge into the node, the main one first.")
    chain: list[str] = Field(description="The most common caller path to the node, entry service first.")
    error_score: float = Field(ge=0.0, le=1.0, description="Rise of the own-error rate of calls into the node.")
    latency_score: float = Field(
        ge=0.0,
        le=1.0,
        description="Its share of the latency added per request, times the excess share of its calls slower than "
        "their p95 before the onset.",
    )
    own_error_rate_before: float | None
    own_error_rate_after: float
    propagated_error_rate_after: float = Field(description="Calls that failed only because a callee failed.")
    self_ms_per_request_before: float | None
    self_ms_per_request_after: float


# --- the span forest ------------------------------------------------------------------------------------------


@dataclass
class _Visit:
    node: str
    caller: str | None
    entry: int
    spans: list[int] = field(default_factory=list)
    self_ms: float = 0.0
    own_error: bool = False


def _union_ms(intervals: list[tuple[datetime, datetime]]) -> float:
    total = 0.0
    current_start: datetime | None = None
    current_end: datetime | None = None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_start is not None and current_end is not None:
                total += (current_end - current_start).total_seconds() * 1000
            current_start, current_end = start, end
        elif end > current_end:
            current_end = end
    if current_start is not None and current_end is not None:
        total += (current_end - current_start).total_seconds() * 1000
    return total


class SpanForest:
    """Spans indexed by trace: parents, children, nodes, self time, own errors and visits. Duplicate spans (an
    exporter's retry) count once; a parent that is missing makes its child a root."""

    def __init__(self, spans: list[Span]) -> None:
        unique: dict[tuple[str, str], Span] = {}
        for span in spans:
            unique.setdefault((span.trace_id, span.span_id), span)
        self.spans = list(unique.values())
        index = {key: i for i, key in enumerate(unique)}
        self.parent: list[int | None] = []
        self.children: list[list[int]] = [[] for _ in self.spans]
        for i, span in enumerate(self.spans):
            parent = None if span.parent_span_id is None else index.get((span.trace_id, span.parent_span_id))
            self.parent.append(None if parent == i else parent)
            if parent is not None and parent != i:
                self.children[parent].append(i)
        self.node = [self._node_of(i) for i in range(len(self.spans))]
        self.self_ms = [self._self_ms(i) for i in range(len(self.spans))]
        self.own_error = [span.error and not self._callee_to_blame(i) for i, span in enumerate(self.spans)]
        self.visits = self._visits()

    def _callee_to_blame(self, i: int) -> bool:
        """A child failed, or (a timeout) a callee in another node was still running when this span ended."""
        span = self.spans[i]
        for c in self.children[i]:
            child = self.spans[c]
            if child.error or (child.end > span.end and self.node[c] != self.node[i]):
                return True
        return False

    def _node_of(self, i: int) -> str:
        span = self.spans[i]
        peer = span.peer
        return peer if peer and not self.children[i] else span.service

    def _self_ms(self, i: int) -> float:
        span = self.spans[i]
        clipped = [
            (max(child.start, span.start), min(child.end, span.end))
            for child in (self.spans[c] for c in self.children[i])
            if child.end > span.start and child.start < span.end
        ]
        return max(0.0, span.duration_ms - _union_ms(clipped))

    def _visits(self) -> list[_Visit]:
        entry_of: dict[int, int] = {}
        for i in range(len(self.spans)):
            path: list[int] = []
            seen: set[int] = set()
            j = i
            while j not in entry_of:
                parent = self.parent[j]
                if parent is None or self.node[parent] != self.node[j] or parent in seen or len(path) > MAX_ANCESTRY:
                    entry_of[j] = j
                    break
                path.append(j)
                seen.add(j)
                j = parent
            for k in path:
                entry_of[k] = entry_of[j]
        visits: dict[int, _Visit] = {}
        for i in range(len(self.spans)):
            entry = entry_of[i]
            visit = visits.get(entry)
            if visit is None:
                parent = self.parent[entry]
                caller = None if parent is None or self.node[parent] == self.node[entry] else self.node[parent]
                visit = visits[entry] = _Visit(node=self.node[entry], caller=caller, entry=entry)
            visit.spans.append(i)
            visit.self_ms += self.self_ms[i]
            visit.own_error = visit.own_error or self.own_error[i]
        return list(visits.values())

    def chain(self, visit: _Visit) -> tuple[str, ...]:
        """The nodes from the trace's entry down to the visit's node, consecutive repeats folded."""
        nodes = [visit.node]
        seen = {visit.entry}
        j = self.parent[visit.entry]
        while j is not None and j not in seen and len(seen) <= MAX_ANCESTRY:
            seen.add(j)
            if self.node[j] != nodes[-1]:
                nodes.append(self.node[j])
            j = self.parent[j]
        return tuple(reversed(nodes))

    def roots(self) -> list[int]:
        return [i for i, parent in enumerate(self.parent) if parent is None]


# --- statistics -----------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _after(span: Span, onset: datetime | None) -> bool:
    return onset is None or span.start >= onset


def _call_stats(forest: SpanForest, visits: list[_Visit]) -> CallStats:
    durations = [forest.spans[v.entry].duration_ms for v in visits]
    errors = sum(forest.spans[v.entry].error for v in visits)
    p50, p95 = percentile(durations, 0.5), percentile(durations, 0.95)
    return CallStats(
        calls=len(visits),
        errors=errors,
        own_errors=sum(v.own_error for v in visits),
        error_rate=round(errors / len(visits), 4) if visits else 0.0,
        p50_ms=None if p50 is None else round(p50, 3),
        p95_ms=None if p95 is None else round(p95, 3),
    )


def edge_id(caller: str, callee: str) -> str:
    return f"{EDGE_EVIDENCE}{caller}->{callee}"


def _edges(forest: SpanForest, onset: datetime | None) -> list[EdgeStats]:
    grouped: dict[tuple[str, str], tuple[list[_Visit], list[_Visit]]] = {}
    for visit in forest.visits:
        if visit.caller is None:
            continue
        before, after = grouped.setdefault((visit.caller, visit.node), ([], []))
        (after if _after(forest.spans[visit.entry], onset) else before).append(visit)
    return [
        EdgeStats(
            id=edge_id(caller, callee),
            caller=caller,
            callee=callee,
            before=_call_stats(forest, before),
            after=_call_stats(forest, after),
        )
        for (caller, callee), (before, after) in sorted(grouped.items())
    ]


def call_graph(spans: list[Span], onset: datetime | None = None) -> CallGraph:
    """Edges between nodes with their calls, errors and latency before and after `onset` (all 'after' when None)."""
    forest = SpanForest(spans)
    return CallGraph(onset=onset, nodes=sorted(set(forest.node)), edges=_edges(forest, onset))


def self_time_ms(spans: list[Span]) -> dict[str, float]:
    """Exclusive time of every span, by span id."""
    forest = SpanForest(spans)
    return {span.span_id: forest.self_ms[i] for i, span in enumerate(forest.spans)}


def error_origins(spans: list[Span]) -> dict[str, str]:
    """'own' or 'propagated' for every failed span, by span id."""
    forest = SpanForest(spans)
    failed = [i for i, span in enumerate(forest.spans) if span.error]
    return {forest.spans[i].span_id: "own" if forest.own_error[i] else "propagated" for i in failed}


# --- blame ----------------------------------------------------------------------------------------------------


@dataclass
class _NodePeriod:
    visits: list[_Visit] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.visits)

    @property
    def own_errors(self) -> int:
        return sum(v.own_error for v in self.visits)

    def own_rate(self) -> float:
        return self.own_errors / self.calls if self.calls else 0.0

    def smoothed_own_rate(self) -> float:
        """Own errors over calls + 1: one failed call out of one is not yet a 100% failure rate."""
        return self.own_errors / (self.calls + 1)

    def self_ms(self) -> float:
        return sum(v.self_ms for v in self.visits)


def _rate(value: float) -> str:
    return f"{value:.0%}"


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


class _Blamer:
    def __init__(self, spans: list[Span], onset: datetime | None) -> None:
        self.forest = forest = SpanForest(spans)
        self.onset = onset
        self.periods: dict[str, tuple[_NodePeriod, _NodePeriod]] = {}
        for visit in forest.visits:
            before, after = self.periods.setdefault(visit.node, (_NodePeriod(), _NodePeriod()))
            (after if _after(forest.spans[visit.entry], onset) else before).visits.append(visit)
        roots = forest.roots()
        self.requests_after = sum(_after(forest.spans[i], onset) for i in roots)
        self.requests_before = len(roots) - self.requests_after
        self.baseline = self.requests_before > 0
        self.edges = {edge.id: edge for edge in _edges(forest, onset)}
        self.added_ms = {node: self._added_ms(node) for node in self.periods}
        self.total_added_ms = sum(max(0.0, value) for value in self.added_ms.values())

    def per_request(self, node: str) -> tuple[float, float]:
        before, after = self.periods[node]
        per_before = before.self_ms() / self.requests_before if self.requests_before else 0.0
        per_after = after.self_ms() / self.requests_after if self.requests_after else 0.0
        return per_before, per_after

    def _added_ms(self, node: str) -> float:
        per_before, per_after = self.per_request(node)
        return per_after - per_before

    def latency_score(self, node: str) -> float:
        """Share of the latency added per request that this node's self time accounts for, times how clearly its
        calls got slower: the fraction of calls after the onset whose self time exceeds the p95 of its calls
        before, beyond the 5% expected by chance (jitter alone scores about 0; a node first called after the
        onset, 1). Without calls before the onset there is no baseline: 0."""
        added = self.added_ms[node]
        if not self.baseline or added <= 0 or self.total_added_ms <= 0:
            return 0.0
        before, after = self.periods[node]
        threshold = percentile([v.self_ms for v in before.visits], 0.95)
        if threshold is None:
            slower = 1.0
        else:
            above = sum(v.self_ms > threshold for v in after.visits) / len(after.visits)
            slower = max(0.0, (above - 0.05) / 0.95)
        return (added / self.total_added_ms) * slower

    def error_score(self, node: str) -> float:
        before, after = self.periods[node]
        base = before.smoothed_own_rate() if self.baseline else 0.0
        return max(0.0, after.smoothed_own_rate() - base)

    def main_edge(self, node: str, by_errors: bool) -> EdgeStats | None:
        into = [edge for edge in self.edges.values() if edge.callee == node]
        if not into:
            return None

        def weight(edge: EdgeStats) -> tuple[float, ...]:
            slower = (edge.after.p95_ms or 0.0) - (edge.before.p95_ms or 0.0)
            own_rise = edge.after.own_errors / max(edge.after.calls, 1) - edge.before.own_errors / max(
                edge.before.calls, 1
            )
            return (own_rise, edge.after.calls, slower) if by_errors else (slower, edge.after.calls, own_rise)

        return max(into, key=weight)

    def chain(self, node: str, edge: EdgeStats | None, by_errors: bool) -> list[str]:
        """The most common caller path of the calls that show it: through the main edge, failing on their own
        when blamed for errors."""
        before, after = self.periods[node]
        candidates = [v for v in after.visits if edge is None or v.caller == edge.caller] or after.visits
        visits = [v for v in candidates if v.own_error] if by_errors else candidates
        counts = Counter(self.forest.chain(v) for v in visits or candidates or before.visits)
        best = max(counts.items(), key=lambda item: (item[1], item[0]))[0] if counts else (node,)
        return list(best)

    def _versus(self, after: str, before: str) -> str:
        since = "after onset" if self.onset is not None else "in the window"
        return f"{after} {since}, {before} before" if self.baseline else f"{after} {since}"

    def reason(self, node: str, edge: EdgeStats | None, error_score: float, latency_score: float) -> str:
        """What changed, leading with what the score rests on: errors on the main edge (own or propagated), then
        its latency and the node's self time when latency counts or nothing else is to be said."""
        before, after = self.periods[node]
        parts: list[str] = []
        where = "" if edge is None else f" on calls from {edge.caller} → {edge.callee}"
        if edge is not None and (edge.after.errors or edge.before.errors):
            errors = self._versus(f"errors {_rate(edge.after.error_rate)}{where}", _rate(edge.before.error_rate))
            if edge.after.errors:
                own = edge.after.own_errors * 2 >= edge.after.errors
                errors += "; own errors" if own else "; propagated from callees"
            parts.append(errors)
            where = ""
        elif edge is None:
            entry = _call_stats(self.forest, after.visits), _call_stats(self.forest, before.visits)
            if entry[0].errors or entry[1].errors:
                rate = f"errors {_rate(entry[0].error_rate)} of {entry[0].calls} requests"
                errors = self._versus(rate, _rate(entry[1].error_rate))
                if entry[0].errors:
                    own = entry[0].own_errors * 2 >= entry[0].errors
                    errors += "; own errors" if own else "; propagated from callees"
                parts.append(errors)
        if latency_score > 0 or not parts:
            if edge is not None and edge.after.p95_ms is not None:
                before_p95 = "none" if edge.before.p95_ms is None else _ms(edge.before.p95_ms)
                parts.append(self._versus(f"p95 {_ms(edge.after.p95_ms)}{where}", before_p95))
            per_before, per_after = self.per_request(node)
            self_time = self._versus(f"self time {_ms(per_after)} per request", _ms(per_before))
            if latency_score > 0:
                self_time += f" ({_rate(self.added_ms[node] / self.total_added_ms)} of the added latency)"
            parts.append(self_time)
        if error_score == 0 and latency_score == 0:
            parts.append("no rise in its own errors or self time")
        return "; ".join(parts)

    def blame(self, node: str) -> ServiceBlame:
        before, after = self.periods[node]
        error_score = round(min(1.0, self.error_score(node)), 4)
        latency_score = round(min(1.0, self.latency_score(node)), 4)
        by_errors = error_score >= latency_score
        edge = self.main_edge(node, by_errors)
        main = edge.id if edge is not None else f"{SERVICE_EVIDENCE}{node}"
        others = sorted(e.id for e in self.edges.values() if e.callee == node and e.id != main)
        propagated = sum(1 for v in after.visits if self.forest.spans[v.entry].error and not v.own_error)
        per_before, per_after = self.per_request(node)
        return ServiceBlame(
            service=node,
            score=round(1 - (1 - error_score) * (1 - latency_score), 4),
            reason=self.reason(node, edge, error_score, latency_score),
            evidence_id=main,
            evidence_ids=[main, *others],
            chain=self.chain(node, edge, by_errors and after.own_errors > 0),
            error_score=error_score,
            latency_score=latency_score,
            own_error_rate_before=round(before.own_rate(), 4) if self.baseline else None,
            own_error_rate_after=round(after.own_rate(), 4),
            propagated_error_rate_after=round(propagated / after.calls, 4) if after.calls else 0.0,
            self_ms_per_request_before=round(per_before, 3) if self.baseline else None,
            self_ms_per_request_after=round(per_after, 3),
        )


def blame(spans: list[Span], onset: datetime | None) -> list[ServiceBlame]:
    """Every node ranked by how much its own errors and self time rose at `onset`, highest score first.

    A caller that only propagates a callee's failure has no own errors and no added self time, so it ranks below
    the callee. Spans starting before `onset` are the baseline; with `onset=None` (or nothing before it) there is
    none: the error score is the own-error rate and latency is not scored."""
    if not spans:
        return []
    blamer = _Blamer(spans, onset)
    ranked = [blamer.blame(node) for node in blamer.periods]
    return sorted(ranked, key=lambda b: (-b.score, b.service))
