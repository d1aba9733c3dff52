"""Root-cause localisation: from the services that suffer to the component that broke.

Alerts fire on the services whose users notice (the entry service, the one with the SLO); the cause is often
elsewhere: a database host, a node, a zone, a third-party API, a broker, a bucket, a deploy of another service.
Per incident this module builds a graph from symptoms to suspects and ranks the suspects:

1. **What changed at the onset.** The pivot is the earliest firing alert's start (else the first metric change,
   else the first error). Each log template is weighed by its *surge* ``2 a / (a + b) - 1`` (clipped at 0), with
   ``a`` its rate from shortly before the pivot on (`ALERT_LEAD`, the usual `for:` of an alert rule) and ``b`` its
   rate in the baseline before: a template that was there at the same rate before weighs 0, one that appears
   weighs 1, one that stopped before the alert fired half as much: the residue of an earlier, resolved fault
   cannot outvote what this incident brought, however many lines it left. (Templates are sparse in small
   bundles, so a new one weighs 1 from its first line; a smoothing prior on ``b`` would zero them.)
2. **Relations.** Every error-like event (error level, exception, 5xx, or a warning of a surging template) of a
   reporter X that names an entity Y (`entities`, or one of the bundle's services as a word of its own) is an
   edge X → Y, with its error class (refused, timeout, DNS — which blames the resolver asked, TLS, exhausted
   pool, 5xx/429 from Y, or a plain error naming Y) and the events' surge weight. Names always given together
   (`dial tcp 10.0.5.12:5432` with `db_host=pg-1.internal`) are one component. A node or zone where two or more
   services' errors surged (from the records' own `node`/`zone` fields) while others elsewhere did not gets
   `runs-on` edges from them. An alert's rule names things too (its labels and summary besides its target).
3. **Suspects.** Each service (log source, alert, metric or deploy subject) and each named entity scores by:
   independent reporters naming it (more reporters and more specific errors score more); its own surging errors
   (a bare 5xx status counts less than a cause, an error naming another component mostly for that one); how far
   its metrics moved after the onset against before (`metric_anomalies.robust_shift`, resource series fully,
   symptom series such as latency and 5xx by half); a deploy of it shortly before the onset; being the earliest
   to fail. Blame passes down the chain: a component named by others whose own errors name a third one hands
   that share of its score on. Alerting services get a small prior (with nothing else, the alerting service it
   is). Telemetry sources (exporters, event streams, the monitoring stack) report on others: recognised by
   structure (their lines name several other services) or, as a down-weight prior only, by a short list of
   well-known names.
4. **Chain.** The path from an alerting service to the top suspect along the relations (`ingest-gw →
   tile-renderer → gpu-node-4`), each hop citing its evidence.

The suspect's own evidence also votes for a category (`category_votes`): the failure of the suspect, not the
loudest symptom. The weights are set by hand on the bundles of `tests/test_localise.py` (one per typical miss);
`Localisation.confidence` is the top suspect's softmax share, shrunk when its score is low (thin evidence).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from vigil.analysis import metric_anomalies as metric_module
from vigil.analysis.bundle import Alert, Bundle
from vigil.analysis.entities import (
    Entity,
    EntityKind,
    component_name,
    entities_of_fields,
    entities_of_labels,
    entities_of_text,
    normalise_name,
    workload_of,
)
from vigil.analysis.fingerprints import as_utc, is_error, truncate
from vigil.analysis.models import (
    Category,
    ChainHop,
    Evidence,
    Extracted,
    Finding,
    Level,
    LogEvent,
    LogFormat,
    MetricChange,
    Suspect,
)
from vigil.analysis.traces import ServiceBlame, blame

ALERT_LEAD = timedelta(minutes=5)
"""How long before an alert's start its fault may have begun (the usual `for:` of a rule): events from then on
are the incident's, the ones before are the baseline."""
MIN_BASELINE = timedelta(minutes=1)
DEPLOY_HALF_LIFE = timedelta(minutes=15)
DEPLOY_HORIZON = timedelta(hours=2)
MAX_SUSPECTS = 6
REPORTED_SHARE = 0.3  # of an error naming another component, the part that counts as its reporter's own
MAX_RELATIONS = 12
# Well-known names of telemetry components: a down-weight prior only, never the decider (see `_telemetry`).
_TELEMETRY_NAMES = re.compile(
    r"exporter|prometheus|alertmanager|grafana|loki|promtail|fluentd|fluent-bit|vector|otel|opentelemetry"
    r"|collector|kube-state-metrics|datadog|telegraf|^events?$|event-?stream|k8s-events|eventrouter|monitoring"
)
# Error classes, most specific first: (class, specificity, pattern). Standard wordings of errno strings, HTTP
# statuses and client libraries, not of one product.
_ERROR_CLASSES: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    (
        "dns",
        1.0,
        re.compile(
            r"no such host|nxdomain|name resolution|name or service not known|unknownhost|lookup .{1,120} on ", re.I
        ),
    ),
    ("tls", 1.0, re.compile(r"x509|certificate|ssl|tls handshake|handshake fail", re.I)),
    (
        "refused",
        1.0,
        re.compile(r"refused|reset by peer|connection reset|no route to host|unreachable|broken pipe|econn", re.I),
    ),
    (
        "exhausted",
        1.0,
        re.compile(
            r"pool .{0,40}(?:exhaust|timed out|not available)|too many (?:connections|clients)|connection slots"
            r"|is not available, request timed out",
            re.I,
        ),
    ),
    ("rate-limited", 0.9, re.compile(r"\b429\b|too many requests|rate.?limit|throttl", re.I)),
    ("timeout", 0.9, re.compile(r"timed? ?out|timeout|deadline exceeded", re.I)),
    ("5xx", 0.8, re.compile(r"\b5\d\d\b|bad gateway|service unavailable|internal server error", re.I)),
    ("storage", 0.9, re.compile(r"no space left|disk quota|read-only file system|i/o error", re.I)),
)
_IP_NAME = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_PORT_WORD = re.compile(r"\bport\s+(\d{2,5})\b", re.I)
_DB_PORTS = frozenset({5432, 5433, 3306, 1433, 1521, 27017, 6379, 9042, 26257, 11211, 9200})
_BROKER_PORTS = frozenset({9092, 5672, 4222, 1883, 6650})
_DB_SCHEMES = re.compile(r"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|jdbc:\w+)://", re.I)
_INTERNAL_SUFFIX = re.compile(r"\.(?:internal|local|lan|corp|svc|cluster\.local|home)$|^\d+\.\d+\.\d+\.\d+$")
_SEVERITY_WORD = re.compile(r"(?<![\w-])(?:ERROR|FATAL|PANIC|CRIT(?:ICAL)?|SEVERE|EMERG|ALERT)(?![\w-])")
# Keys whose value is the reporter's caller or the reporter itself (nginx's `client:` and `server:`), not a
# dependency it failed to reach.
_NOT_DEPENDENCY = re.compile(r"\b(?:client|server)(?:_ip|_addr|_name)?\b\s?[:=]\s?\"?([\w.:-]{3,200})", re.I)
_ENTITY_CATEGORY = {
    EntityKind.DATABASE: Category.DATABASE,
    EntityKind.BUCKET: Category.STORAGE,
    EntityKind.QUEUE: Category.DEPENDENCY,
    EntityKind.NODE: Category.COMPUTE,
    EntityKind.ZONE: Category.NETWORK,
    EntityKind.REGION: Category.NETWORK,
    EntityKind.CERTIFICATE: Category.SECURITY,
}
_CLASS_CATEGORY = {
    "dns": Category.NETWORK,
    "tls": Category.SECURITY,
    "rate-limited": Category.DEPENDENCY,
    "storage": Category.STORAGE,
}
# Series that every failure moves (latency, errors, request rates): symptoms, half weight in a suspect's score.
_SYMPTOM_SERIES = re.compile(r"latenc|duration|_seconds|request|http|grpc|error|5xx|status|response|rt$|p9\d|qps|rps")
_SERIES_SERVICE_KEYS = ("service", "job", "app", "container", "deployment", "workload", "service_name", "pod")
_NAMED_BY = {
    "alert": "named by the alert rule of {}",
    "runs-on": "where {} fail",
    "trace": "failing or slow in the calls of {}",
}


@dataclass
class Relation:
    """Reporter X's error-like events that name component Y."""

    reporter: str
    component: str
    kind: EntityKind
    error_class: str
    specificity: float
    weight: float = 0.0  # sum of the events' surge weights
    count: int = 0
    first_seen: datetime | None = None
    sample: str = ""
    category: Category | None = None
    aliases: list[str] = field(default_factory=list)  # other names of the component in the same lines
    source: str = "logs"  # or "trace": calls between spans' services (vigil.analysis.traces)

    @property
    def id(self) -> str:
        if self.source == "trace":  # the id vigil.analysis.traces gives the edge
            return truncate(f"trace:edge:{self.reporter}->{self.component}", 120)
        return truncate(f"relation:{self.reporter}->{self.component}", 120)


@dataclass
class _Candidate:
    component: str
    kind: str
    reporters: dict[str, Relation] = field(default_factory=dict)
    own_weight: float = 0.0
    own_total: float = 0.0  # its surging errors' weight, all of them ...
    own_naming: float = 0.0  # ... and of those that name another component
    own_onset: datetime | None = None
    shift: float = 0.0
    shift_series: list[MetricChange] = field(default_factory=list)
    deploy: float = 0.0
    deploy_ids: list[str] = field(default_factory=list)
    alerting: bool = False
    alert_ids: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    trace: float = 0.0  # how much its own errors and self time rose at the onset, from spans (0..1)
    trace_reason: str = ""
    telemetry: bool = False
    votes: dict[Category, float] = field(default_factory=lambda: defaultdict(float))


@dataclass
class Localisation:
    suspects: list[Suspect]
    chain: list[ChainHop]
    relations: list[Relation]
    confidence: float
    category_votes: dict[Category, float]


TRACE_MIN_SCORE = 0.2
"""A node's rise in own errors / self time (vigil.analysis.traces.blame, 0..1) below which spans say nothing: small
slowdowns within call-to-call noise score under it on the traces module's synthetic checks."""
TRACE_WEIGHT = 2.0
"""Spans see the failure where it happens (own errors, self time), so a full blame weighs like a component named
by two services' errors."""
TRACE_SPECIFICITY = 0.9
TRACE_PATH_SPECIFICITY = 0.2


# -- onset and surge --------------------------------------------------------------------------------------------


def firing_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    return [a for a in alerts if a.status != "resolved" and a.starts_at is not None and a.starts_at.year > 1]


def pivot_of(alerts: Sequence[Alert], metric_onsets: Iterable[datetime], fallback: datetime | None) -> datetime | None:
    """The earliest firing alert's start; without alerts the first metric change, else `fallback`."""
    starts = [as_utc(a.starts_at) for a in firing_alerts(alerts) if a.starts_at is not None]
    if starts:
        return min(starts)
    onsets = sorted(metric_onsets)
    return onsets[0] if onsets else fallback


def _surge(after_rate: float, before_rate: float) -> float:
    """0 when the rate after is no higher than before, towards 1 as it grows past it; 1 for what is new."""
    if after_rate <= 0:
        return 0.0
    return max(0.0, 2 * after_rate / (after_rate + before_rate) - 1)


def template_surges(
    events: Sequence[LogEvent], template_ids: Sequence[str], pivot: datetime | None
) -> dict[str, float]:
    """Per template, the weight in [0, 1] of its change at the pivot (see the module docstring); 1 for every
    template when there is no baseline to compare against."""
    timed = [(as_utc(e.ts), tid) for e, tid in zip(events, template_ids, strict=True) if e.ts is not None]
    ids = set(template_ids)
    if pivot is None or not timed:
        return dict.fromkeys(ids, 1.0)
    start = min(t for t, _ in timed)
    end = max(t for t, _ in timed)
    cut = pivot - min(ALERT_LEAD, (pivot - start) / 2) if pivot > start else pivot
    if cut - start < MIN_BASELINE:
        return dict.fromkeys(ids, 1.0)
    before_s = (cut - start).total_seconds()
    after_s = max((end - cut).total_seconds(), 60.0)
    before: dict[str, int] = defaultdict(int)
    after: dict[str, int] = defaultdict(int)
    after_pivot: dict[str, int] = defaultdict(int)
    for ts, tid in timed:
        if ts < cut:
            before[tid] += 1
        else:
            after[tid] += 1
            after_pivot[tid] += ts >= pivot
    tail = end - pivot > timedelta(minutes=1)
    out = dict.fromkeys(ids, 0.0)
    for tid in ids:
        if tid not in after:
            continue
        weight = _surge(after[tid] / after_s, before[tid] / before_s)
        if tail:  # a template that stopped before the alert fired is not what the alert is about
            weight *= 0.5 + 0.5 * after_pivot[tid] / after[tid]
        out[tid] = round(weight, 4)
    return out


def spread_weight(
    count: int,
    first_seen: datetime | None,
    last_seen: datetime | None,
    pivot: datetime | None,
    start: datetime | None,
    end: datetime | None,
) -> float:
    """The surge weight of a group of events known only by count and first/last times (a finding, an error
    fingerprint), its events taken as evenly spread between them."""
    if pivot is None or start is None or end is None or first_seen is None or last_seen is None:
        return 1.0
    cut = pivot - min(ALERT_LEAD, (pivot - start) / 2) if pivot > start else pivot
    if cut - start < MIN_BASELINE:
        return 1.0
    first, last = as_utc(first_seen), as_utc(last_seen)
    span = (last - first).total_seconds()
    if span <= 0:
        share_before = 1.0 if first < cut else 0.0
    else:
        share_before = min(max((cut - first).total_seconds() / span, 0.0), 1.0)
    b = count * share_before
    a = count - b
    if a <= 0:
        return 0.0
    return round(_surge(a / max((end - cut).total_seconds(), 60.0), b / (cut - start).total_seconds()), 4)


def finding_weight(finding: Finding, pivot: datetime | None, start: datetime | None, end: datetime | None) -> float:
    return spread_weight(finding.count, finding.first_seen, finding.last_seen, pivot, start, end)


def incident_onset(
    events: Sequence[LogEvent],
    template_ids: Sequence[str],
    surges: dict[str, float],
    pivot: datetime | None,
    alerts: Sequence[Alert],
) -> datetime | None:
    """The start of what changed: the earliest error-like event of a surging template (weight >= 0.5) — from
    its burst, not from a stray early occurrence — or the earliest firing alert's start; None when neither."""
    stamps = [as_utc(a.starts_at) for a in firing_alerts(alerts) if a.starts_at is not None]
    by_template: dict[str, list[datetime]] = defaultdict(list)
    for event, tid in zip(events, template_ids, strict=True):
        if event.ts is not None and surges.get(tid, 0.0) >= 0.5 and _error_like(event, 1.0):
            by_template[tid].append(as_utc(event.ts))
    cut = None if pivot is None else pivot - ALERT_LEAD
    for times in by_template.values():
        times.sort()
        if cut is not None:
            early = [t for t in times if t < cut]
            if len(early) > 0.25 * len(times):  # a template with a history before: its burst starts near the cut
                later = [t for t in times if t >= cut]
                times = later or times
        stamps.append(times[0])
    return min(stamps) if stamps else None


# -- relations --------------------------------------------------------------------------------------------------


def error_class(text: str) -> tuple[str, float]:
    for name, specificity, pattern in _ERROR_CLASSES:
        if pattern.search(text):
            return name, specificity
    return "error", 0.5


# Fields of a log record that say who wrote it (its host, pod, node, zone), not what it failed to reach.
_SELF_KEYS = frozenset(
    {
        "host",
        "hostname",
        "instance",
        "pod",
        "pod_name",
        "node",
        "nodename",
        "node_name",
        "namespace",
        "container",
        "service",
        "service_name",
        "app",
        "job",
        "zone",
        "region",
        "availability_zone",
        "source",
        "logger",
        "k8s.pod.name",
        "k8s.node.name",
        "k8s.namespace.name",
    }
)
_NODE_KEYS = ("node", "nodename", "node_name", "kubernetes_node", "k8s.node.name", "host.name")
_ZONE_KEYS = ("zone", "availability_zone", "topology.kubernetes.io/zone", "cloud.availability_zone")
# Alert labels that identify the alerting target itself (its scrape address, pod, container), not a dependency.
_ALERT_SELF_KEYS = frozenset({"instance", "pod", "pod_name", "container", "job", "endpoint", "namespace"})
_ERROR_FIELDS = ("error", "err", "error.message", "reason", "cause", "exception", "exc_info", "detail")


def _event_text(event: LogEvent) -> str:
    """The message, its exception and the error-carrying fields of a structured event."""
    parts = [event.message[:4000]]
    if event.exception_type:
        parts.append(f"{event.exception_type}: {event.exception_message or ''}"[:2000])
    parts += [event.fields[k][:2000] for k in _ERROR_FIELDS if event.fields.get(k)]
    return "\n".join(parts)


def _sample(event: LogEvent) -> str:
    """The message's first line with the first line of its exception and error fields."""
    parts = [event.message.split("\n", 1)[0]]
    if event.exception_type:
        parts.append(f"{event.exception_type}: {event.exception_message or ''}".split("\n", 1)[0])
    parts += [event.fields[k].split("\n", 1)[0] for k in _ERROR_FIELDS if event.fields.get(k)]
    return truncate(" | ".join(p for p in parts if p.strip()), 300)


def _event_entities(event: LogEvent) -> list[Entity]:
    if event.format is LogFormat.ACCESS:  # the remote address of an access line is a client, not a dependency
        keys = {k: v for k, v in event.fields.items() if k.startswith("upstream")}
        return entities_of_labels(keys)
    text = _event_text(event)
    fields = {k: v for k, v in event.fields.items() if k.lower() not in _SELF_KEYS}
    found = entities_of_text(text) + entities_of_fields(fields)
    clients = {m.group(1).lower().rstrip(".,").split(":")[0] for m in _NOT_DEPENDENCY.finditer(text)}
    return [e for e in found if e.name not in clients and e.kind is not EntityKind.VERSION]


def _prefer_names(entities: list[Entity]) -> list[Entity]:
    """A line naming a host both by DNS name and by address (`"db.internal" (10.0.3.7)`) names one thing: the
    bare addresses go when a name is there (addresses with a port stay: they are endpoints of their own)."""
    names = [e for e in entities if e.kind in (EntityKind.HOST, EntityKind.DOMAIN) and not _IP_NAME.fullmatch(e.name)]
    if not names:
        return entities
    return [e for e in entities if not (_IP_NAME.fullmatch(e.name) and e.port is None)]


def _status(event: LogEvent) -> int | None:
    for key in ("status", "status_code", "http_status", "code", "response_status"):
        value = event.fields.get(key)
        if value is not None and len(value) == 3 and value.isdigit():
            return int(value)
    return None


def _error_like(event: LogEvent, weight: float) -> bool:
    """An error, an exception, a 5xx, or a warning of a surging template. A line whose format the normaliser did
    not know (no level) counts when its header carries an upper-case error severity (`ERROR:`, `FATAL`)."""
    if is_error(event) or (event.level is Level.WARNING and weight >= 0.5):
        return True
    status = _status(event) if event.fields else None
    if status is not None and status >= 500:
        return True
    return event.level is None and _SEVERITY_WORD.search(event.message[:300]) is not None


def _own_specificity(event: LogEvent) -> float:
    """How much an error-like event says about its own service: a cause (refused, no space, TLS...) more than a
    bare 5xx status, which every failure behind the service produces alike."""
    if event.format is LogFormat.ACCESS or (not is_error(event) and _status(event) is not None):
        return 0.3
    return error_class(_event_text(event))[1]


def surge_keys(events: Sequence[LogEvent], template_ids: Sequence[str]) -> list[str]:
    """The key each event's surge is measured on: its template, split by 5xx status (an access-log template
    holds the 200s of the baseline and the 500s of the incident alike)."""
    out = []
    for event, tid in zip(events, template_ids, strict=True):
        status = _status(event) if event.fields else None
        out.append(f"{tid}#5xx" if status is not None and status >= 500 else tid)
    return out


def _entity_category(entity: Entity, text: str, cls: str) -> Category | None:
    if cls in _CLASS_CATEGORY:
        return _CLASS_CATEGORY[cls]
    port = entity.port
    if port is None and (m := _PORT_WORD.search(text)):
        port = int(m.group(1))
    if port in _DB_PORTS or (entity.key or "") in ("db", "database", "dbname", "datname", "db.name"):
        return Category.DATABASE
    if _DB_SCHEMES.search(text) and entity.kind in (EntityKind.HOST, EntityKind.DOMAIN):
        return Category.DATABASE
    if port in _BROKER_PORTS:
        return Category.DEPENDENCY
    if cls == "exhausted":
        return Category.DATABASE
    if entity.kind in _ENTITY_CATEGORY:
        return _ENTITY_CATEGORY[entity.kind]
    if entity.kind in (EntityKind.DOMAIN, EntityKind.HOST) and not _INTERNAL_SUFFIX.search(entity.name):
        return Category.DEPENDENCY
    return None


def error_like_events(x: Extracted) -> list[int]:
    """Indexes of the events with a service that are error-like and weigh something at the pivot."""
    out = []
    for index, (event, key) in enumerate(zip(x.events, x.surge_keys, strict=False)):
        weight = x.surges.get(key, 1.0)
        if event.service and weight > 0 and _error_like(event, weight):
            out.append(index)
    return out


def relations(
    x: Extracted, services: Sequence[str], bad: Sequence[int] | None = None
) -> tuple[list[Relation], set[int]]:
    """Edges reporter → named component from the error-like events of each reporter (see the module docstring),
    and the indexes of the events that named another component. `bad`: `error_like_events(x)`, when known."""
    found: dict[tuple[str, str], Relation] = {}
    naming: set[int] = set()
    named_in: dict[str, set[int]] = defaultdict(set)
    onset = x.onset
    entities_of: dict[tuple[str, tuple[tuple[str, str], ...]], list[Entity]] = {}  # repeated lines: parsed once
    known = sorted((s for s in services if len(s) >= 3), key=len, reverse=True)
    # A known service's name as a word of its own: not inside a path, a host name, a user@db or a longer name.
    words = "|".join(map(re.escape, known))
    known_word = re.compile(rf"(?<![\w./@:-])({words})(?![\w./@:-])") if known else None
    for index in error_like_events(x) if bad is None else bad:
        event = x.events[index]
        weight = x.surges.get(x.surge_keys[index], 1.0)
        if onset is not None and event.ts is not None and as_utc(event.ts) < onset - ALERT_LEAD:
            continue
        reporter = event.service or ""
        text = _event_text(event)
        memo = (text, tuple(sorted(event.fields.items())) if event.fields else ())
        if memo not in entities_of:
            entities_of[memo] = _prefer_names(_event_entities(event))
        entities = list(entities_of[memo])
        if known_word is not None:  # the bundle's own services named as words ("upstream thumbnailer returned 503")
            entities += [Entity(kind=EntityKind.SERVICE, name=m.group(1)) for m in known_word.finditer(text[:2000])]
        if not entities:
            continue
        cls, specificity = error_class(text)
        if cls == "dns":  # a failed lookup blames the resolver asked (port 53), not the name looked up
            resolvers = [e for e in entities if e.port == 53]
            entities = resolvers or entities
            specificity = 1.0 if resolvers else 0.5
        seen: set[str] = set()
        for entity in entities:
            component = component_name(entity, services)
            if component == reporter or workload_of(component) == reporter or component in seen:
                continue
            seen.add(component)
            naming.add(index)
            named_in[component].add(index)
            edge = (reporter, component)
            rel = found.get(edge)
            if rel is None:
                rel = found[edge] = Relation(reporter, component, entity.kind, cls, specificity)
                rel.sample = _sample(event)
                rel.category = _entity_category(entity, text, cls)
            elif specificity > rel.specificity:
                rel.error_class, rel.specificity = cls, specificity
                rel.category = _entity_category(entity, text, cls) or rel.category
            rel.weight += weight
            rel.count += 1
            if event.ts is not None and (rel.first_seen is None or as_utc(event.ts) < rel.first_seen):
                rel.first_seen = as_utc(event.ts)
    _merge_aliases(found, named_in)
    for rel in _shared_locations(x, bad if bad is not None else error_like_events(x), naming):
        found.setdefault((rel.reporter, rel.component), rel)
    out = sorted(found.values(), key=lambda r: (-r.weight * r.specificity, r.id))
    return out, naming


def _location_of(event: LogEvent) -> list[tuple[str, EntityKind]]:
    """Where the event's writer runs, from its own fields: its node and its zone."""
    out = []
    for key in _NODE_KEYS:
        if event.fields.get(key):
            out.append((normalise_name(event.fields[key]), EntityKind.NODE))
            break
    for key in _ZONE_KEYS:
        if event.fields.get(key):
            out.append((normalise_name(event.fields[key]), EntityKind.ZONE))
            break
    return out


def _shared_locations(x: Extracted, bad: Sequence[int], naming: set[int]) -> list[Relation]:
    """`runs-on` relations: a node or zone where at least two services' errors surged while services elsewhere
    did not (or where every failing service runs). Its failing services become its reporters, and their errors
    there name it (`naming`), so their blame passes on to it."""
    total: dict[tuple[str, EntityKind], set[str]] = defaultdict(set)
    for event in x.events:
        if event.service and event.fields:
            for where in _location_of(event):
                total[where].add(event.service)
    if not total:
        return []
    failing: dict[tuple[str, EntityKind], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index in bad:
        event = x.events[index]
        if event.fields and event.service and x.surges.get(x.surge_keys[index], 1.0) >= 0.5:
            for where in _location_of(event):
                failing[where][event.service].append(index)
    out = []
    for where, services in failing.items():
        if len(services) < 2:
            continue
        elsewhere = {s for w, names in total.items() if w != where and w[1] is where[1] for s in names}
        if elsewhere and elsewhere <= set(services):  # the same services fail elsewhere too: not this place
            continue
        for service, indexes in services.items():
            rel = Relation(service, where[0], where[1], "runs-on", 0.6)
            for index in indexes:
                event = x.events[index]
                rel.weight += x.surges.get(x.surge_keys[index], 1.0)
                rel.count += 1
                if event.ts is not None and (rel.first_seen is None or as_utc(event.ts) < rel.first_seen):
                    rel.first_seen = as_utc(event.ts)
                naming.add(index)
            rel.sample = f"{service} runs on {where[1].value} {where[0]}; {_sample(x.events[indexes[0]])}"[:300]
            rel.category = Category.COMPUTE if where[1] is EntityKind.NODE else Category.NETWORK
            out.append(rel)
    return out


def _merge_aliases(found: dict[tuple[str, str], Relation], named_in: dict[str, set[int]]) -> None:
    """Components named by exactly the same events (`dial tcp 10.0.5.12:5432` with `db_host=pg-1.internal`) are one
    component under several names: one relation is kept, under a DNS name rather than an address."""
    groups: dict[frozenset[int], list[str]] = defaultdict(list)
    for component, indexes in named_in.items():
        groups[frozenset(indexes)].append(component)
    for names in groups.values():
        if len(names) < 2:
            continue
        names.sort(key=lambda n: (bool(_IP_NAME.match(n)), -len(n), n))
        keep, aliases = names[0], names[1:]
        for (reporter, component), rel in list(found.items()):
            if component in aliases:
                del found[(reporter, component)]
                kept = found.get((reporter, keep))
                if kept is not None:
                    kept.aliases = sorted({*kept.aliases, component})
                    if kept.category is None:
                        kept.category = rel.category
                    if rel.specificity > kept.specificity:
                        kept.error_class, kept.specificity = rel.error_class, rel.specificity


# -- metrics per service -----------------------------------------------------------------------------------------


def series_service(name: str, labels: dict[str, str], known: Iterable[str], prefixes: set[str]) -> str | None:
    """The service a series belongs to: by a label key (a pod's workload), else by a name prefix that is a known
    service or that the bundle's series share structurally (`cartservice_cpu`, `cartservice_mem`, ...)."""
    for key in _SERIES_SERVICE_KEYS:
        value = labels.get(key)
        if value:
            return workload_of(value) if key == "pod" else value
    lowered = name.lower()
    for service in sorted(known, key=len, reverse=True):
        if lowered.startswith(service.lower()) and lowered[len(service) : len(service) + 1] in ("_", "-", ".", ":"):
            return service
    head = re.split(r"[_.:]", lowered, maxsplit=1)[0]
    return head if head in prefixes else None


def structural_prefixes(names: Sequence[str]) -> set[str]:
    """Name heads that look like subjects: each occurs with at least two tails, and their tails recur under at
    least two heads (`a_cpu`, `a_mem`, `b_cpu`, `b_mem` → {a, b}); `http_requests_total` alone gives nothing."""
    pairs = {tuple(re.split(r"[_.:]", n.lower(), maxsplit=1)) for n in names}
    split = [(p[0], p[1]) for p in pairs if len(p) == 2 and p[0] and p[1]]
    tails_of: dict[str, set[str]] = defaultdict(set)
    heads_of: dict[str, set[str]] = defaultdict(set)
    for head, tail in split:
        tails_of[head].add(tail)
        heads_of[tail].add(head)
    return {h for h, tails in tails_of.items() if len(tails) >= 2 and sum(len(heads_of[t]) >= 2 for t in tails) >= 2}


def metric_shifts(
    bundle: Bundle, changes: Sequence[MetricChange], pivot: datetime | None, known: Sequence[str]
) -> list[MetricChange]:
    """`changes` with their service and robust shift at the pivot; series that did not change get none."""
    if pivot is None:
        return list(changes)
    at = pivot.timestamp()
    prefixes = structural_prefixes([m.name for m in bundle.metrics])
    points = {(m.name, tuple(sorted(m.labels.items()))): m.points for m in bundle.metrics}
    out = []
    for change in changes:
        a = change.anomaly
        # the series' own change point when it is near the pivot, else the pivot (what moved at the onset)
        onset = at
        if a.onset is not None and abs(a.onset - at) <= ALERT_LEAD.total_seconds() * 2:
            onset = min(a.onset, at)
        shift = metric_module.robust_shift(points.get((a.name, tuple(sorted(a.labels.items()))), []), onset)
        service = series_service(a.name, a.labels, known, prefixes)
        out.append(MetricChange(change.id, change.category, a, service, shift))
    return out


# -- suspects ---------------------------------------------------------------------------------------------------


def _telemetry(name: str, named_services: int) -> bool:
    """A telemetry source: its lines are about several other services (structure), or its name is a well-known
    monitoring component's and it names another service."""
    return named_services >= 2 or (named_services >= 1 and bool(_TELEMETRY_NAMES.search(name.lower())))


def _saturate(value: float, scale: float) -> float:
    return 1.0 - math.exp(-max(value, 0.0) / scale)


def localise(x: Extracted, *, alert_ids: dict[str, list[str]], deploy_ids: dict[int, str]) -> Localisation:
    """Rank suspects and build the chain (see the module docstring). `alert_ids`: alerting service → its alert
    evidence ids; `deploy_ids`: bundle deploy index → its evidence id."""
    bundle = x.bundle
    log_services = sorted({e.service for e in x.events if e.service})
    alert_services: dict[str, list[str]] = alert_ids
    deploy_services = [d.service for d in bundle.deploys]
    metric_services = [m.service for m in x.metrics if m.service]
    services = list(dict.fromkeys([*alert_services, *log_services, *deploy_services, *metric_services]))
    bad = error_like_events(x)
    rels, naming = relations(x, services, bad)
    cands: dict[str, _Candidate] = {}

    def cand(name: str, kind: str = "service") -> _Candidate:
        c = cands.get(name)
        if c is None:
            c = cands[name] = _Candidate(name, kind)
        return c

    for service in services:
        cand(service)
    for service, ids in alert_services.items():
        c = cand(service)
        c.alerting = True
        c.alert_ids = ids
    # What each alert's rule names besides its service (a node, a zone, a database; a host in its summary) is
    # named by the alert: the rule's author said where to look.
    for alert in firing_alerts(bundle.alerts):
        owner = alert_service(alert)
        if owner is None:
            continue
        labels = {k: v for k, v in alert.labels.items() if k.lower() not in _ALERT_SELF_KEYS}
        text = " ".join(alert.annotations.get(k, "") for k in ("summary", "description", "message", "expr"))
        named_by_rule = entities_of_labels(labels) + _prefer_names(entities_of_text(text[:2000]))
        for entity in named_by_rule:
            if entity.kind in (EntityKind.SERVICE, EntityKind.NAMESPACE, EntityKind.VERSION):
                continue
            component = component_name(entity, services)
            if component == owner or workload_of(component) == owner:
                continue
            rel = Relation(owner, component, entity.kind, "alert", 0.8, weight=1.0, count=1)
            rel.first_seen = as_utc(alert.starts_at) if alert.starts_at else None
            rel.sample = truncate(f"alert {alert.name} names {entity.key or 'in its text'}={entity.name}", 300)
            rel.category = _entity_category(entity, text, error_class(text)[0])
            rels.append(rel)
    # Spans: the node whose own errors or self time rose, not the callers that only pass its failure on.
    for rel, blamed in trace_relations(blame(bundle.traces, x.onset), services):
        rels.append(rel)
        if blamed is not None:
            c = cand(blamed.service, "service" if blamed.service in services else rel.kind.value)
            if blamed.score > c.trace:
                c.trace, c.trace_reason = blamed.score, blamed.reason
    # Own signals: surging errors of each log source.
    named: dict[str, set[str]] = defaultdict(set)
    for rel in rels:
        if rel.component in services:
            named[rel.reporter].add(rel.component)
    for index in bad:
        event = x.events[index]
        weight = x.surges.get(x.surge_keys[index], 1.0)
        c = cand(event.service or "")
        # An error that names another component is that one's failure seen from here: it counts mostly there.
        specific = weight * _own_specificity(event)
        c.own_weight += specific * (REPORTED_SHARE if index in naming else 1.0)
        c.own_total += specific
        c.own_naming += specific if index in naming else 0.0
        if weight >= 0.5 and event.ts is not None:
            ts = as_utc(event.ts)
            if c.own_onset is None or ts < c.own_onset:
                c.own_onset = ts
    for service in log_services:
        cand(service).telemetry = _telemetry(service, len(named.get(service, set())))
    for rel in rels:
        c = cand(rel.component, rel.kind.value if rel.component not in services else "service")
        previous = c.reporters.get(rel.reporter)
        if previous is None or rel.weight * rel.specificity > previous.weight * previous.specificity:
            c.reporters[rel.reporter] = rel
        if rel.category is not None:
            c.votes[rel.category] += math.log1p(rel.weight) * rel.specificity
    # Findings: a service's own detector findings, weighted by their surge, vote for its category.
    for finding in x.findings:
        weight = x.finding_weights.get(finding.id, 1.0)
        for service in finding.services:
            if service in cands:
                cands[service].findings.append(finding)
                symptom = 0.5 if finding.detector == "http-5xx-spike" else 1.0
                cands[service].votes[finding.category] += weight * symptom * math.log1p(finding.count)
    # Metrics: how far each service's series moved after the onset (BARO-style), resource series fully.
    for change in x.metrics:
        if not change.service:
            continue
        c = cand(change.service)
        factor = 0.5 if change.category is None and _SYMPTOM_SERIES.search(change.anomaly.name.lower()) else 1.0
        strength = factor * math.log1p(change.shift)
        if strength > c.shift:
            c.shift = strength
        c.shift_series.append(change)
        if change.category is not None:  # the resource that moved most speaks loudest (BARO's ranking)
            c.votes[change.category] += 0.5 * math.log1p(change.shift)
    # Deploys shortly before the onset.
    onset = x.onset
    for index, deploy in enumerate(bundle.deploys):
        if onset is None:
            continue
        delta = onset - as_utc(deploy.ts)
        if timedelta(0) <= delta <= DEPLOY_HORIZON:
            closeness = math.pow(0.5, delta / DEPLOY_HALF_LIFE)
            c = cand(deploy.service)
            if closeness > c.deploy:
                c.deploy = closeness
            c.deploy_ids.append(deploy_ids[index])
    for c in cands.values():
        # A deploy shortly before its own errors, or before the errors of those that call it: its change.
        if c.deploy and (c.own_weight or c.reporters):
            c.votes[Category.DEPLOYMENT] += 3.0 * c.deploy
            if x.features.get("deploy:app_exc_after") and c.own_weight:
                c.votes[Category.DEPLOYMENT] += 2.0
    outgoing: dict[str, list[Relation]] = defaultdict(list)
    for rel in rels:
        outgoing[rel.reporter].append(rel)
    scored = _score(cands, onset, outgoing)
    suspects = [_suspect(c, s, reasons) for c, s, reasons in scored[:MAX_SUSPECTS]]
    votes: dict[Category, float] = dict(scored[0][0].votes) if scored else {}
    chain = _chain(scored[0][0], cands, rels, alert_services) if scored else []
    confidence = _confidence([s for _, s, _ in scored])
    return Localisation(suspects, chain, rels[:MAX_RELATIONS] if rels else [], confidence, votes)


def alert_service(alert: Alert) -> str | None:
    for key in ("service", "job", "app", "container", "deployment"):
        if alert.labels.get(key):
            return alert.labels[key]
    pod = alert.labels.get("pod")
    return workload_of(pod) if pod else None


def _blame(cands: dict[str, _Candidate], outgoing: dict[str, list[Relation]]) -> dict[str, float]:
    """Each candidate's reported strength (what other components' errors naming it say), with blame passed
    down the chain: a component named by others whose own errors mostly name a third one is that one's victim,
    so the share of its strength its errors explain moves on to what they name (three passes: chains of up to
    four components)."""
    strength: dict[str, float] = {}
    for c in cands.values():
        total = 0.0
        for name, rel in c.reporters.items():
            if name == c.component:
                continue
            reporter = cands.get(rel.reporter)
            total += _reported(rel) * (0.5 if reporter is not None and reporter.telemetry else 1.0)
        strength[c.component] = total
    for _ in range(3):
        moved: dict[str, float] = defaultdict(float)
        for c in cands.values():
            out = [r for r in outgoing.get(c.component, []) if r.component in cands and r.component != c.component]
            if not out or not strength[c.component] or not c.own_total:
                continue
            passed = strength[c.component] * (c.own_naming / c.own_total)
            weights = [_reported(r) for r in out]
            total = sum(weights)
            if total <= 0:
                continue
            moved[c.component] -= passed
            for rel, w in zip(out, weights, strict=True):
                moved[rel.component] += passed * w / total
        if not moved:
            break
        for name, delta in moved.items():
            strength[name] = max(strength[name] + delta, 0.0)
    return strength


def _score(
    cands: dict[str, _Candidate], onset: datetime | None, outgoing: dict[str, list[Relation]]
) -> list[tuple[_Candidate, float, list[str]]]:
    onsets = [c.own_onset for c in cands.values() if c.own_onset is not None]
    first = min(onsets) if onsets else None
    blame = _blame(cands, outgoing)
    out: list[tuple[_Candidate, float, list[str]]] = []
    for c in cands.values():
        reasons: list[str] = []
        reported = [r for name, r in c.reporters.items() if name != c.component]
        score = blame.get(c.component, 0.0)
        reasons += _named_by(reported)
        if c.own_total and c.own_naming / c.own_total >= 0.5 and outgoing.get(c.component):
            targets = ", ".join(dict.fromkeys(r.component for r in outgoing[c.component][:3]))
            reasons.append(f"its own errors name {targets}")
        if c.own_weight:
            own = 0.5 * math.log1p(c.own_weight)
            score += own
            reasons.append(f"own errors surged (weight {c.own_weight:.1f})")
        if c.shift:
            score += 0.6 * c.shift
            top = max(c.shift_series, key=lambda m: m.shift)
            reasons.append(f"{top.id} moved {top.shift:g} robust sigmas after the onset")
        if c.trace:
            score += TRACE_WEIGHT * c.trace
            reasons.append(f"spans: {c.trace_reason}")
        if c.deploy:
            score += 1.5 * c.deploy
            reasons.append("deployed shortly before the onset")
        if c.alerting:
            score += 0.5
            reasons.append("its alert fired")
        if first is not None and c.own_onset is not None and c.own_onset - first <= timedelta(seconds=30):
            score += 0.3
            reasons.append("earliest to fail")
        if c.telemetry or _TELEMETRY_NAMES.search(c.component.lower()):
            score *= 0.3
            reasons.append("telemetry source (down-weighted)")
        if score > 0:
            out.append((c, round(score, 4), reasons))
    out.sort(key=lambda t: (-t[1], t[0].component))
    return out


def _reported(rel: Relation) -> float:
    """What one reporter's errors naming a component say against it: on the scale of a component's own errors
    (half a log of the surge-weighted count), times the errors' specificity, doubled: being named by another
    component's failures is the strongest single sign of a cause elsewhere."""
    return 2.0 * rel.specificity * 0.5 * math.log1p(rel.weight)


def _confidence(scores: Sequence[float]) -> float:
    """The top suspect's share of a softmax over the scores, shrunk when the evidence is thin (a low top score)."""
    if not scores:
        return 0.0
    top = scores[0]
    exps = [math.exp(s - top) for s in scores]
    share = 1.0 / sum(exps)
    return round(share * _saturate(top, 1.5), 4)


def _own_evidence(c: _Candidate) -> list[str]:
    ids = [f.id for f in c.findings[:3]]
    ids += [m.id for m in sorted(c.shift_series, key=lambda m: -m.shift)[:2] if m.shift > 0]
    ids += c.deploy_ids[:1]
    return ids


def _suspect(c: _Candidate, score: float, reasons: list[str]) -> Suspect:
    category = max(c.votes, key=lambda k: c.votes[k]) if c.votes else None
    evidence = [r.id for r in c.reporters.values()] + _own_evidence(c) + c.alert_ids[:1]
    return Suspect(
        component=c.component,
        kind=c.kind,
        score=score,
        category=category,
        onset=c.own_onset,
        reporters=sorted(c.reporters),
        reasons=reasons,
        evidence=list(dict.fromkeys(evidence)),
        telemetry=c.telemetry,
    )


def _chain(
    top: _Candidate, cands: dict[str, _Candidate], rels: Sequence[Relation], alert_services: dict[str, list[str]]
) -> list[ChainHop]:
    """The strongest path from an alerting service to `top` along relations (breadth first, at most 4 hops)."""
    own = _own_evidence(top)
    if top.component in alert_services or not alert_services:
        hop = ChainHop(component=top.component, relation="the failing component", evidence=top.alert_ids[:1] + own)
        return [hop]
    edges: dict[str, list[Relation]] = defaultdict(list)
    for rel in sorted(rels, key=lambda r: -r.weight * r.specificity):
        edges[rel.reporter].append(rel)
    starts = sorted(alert_services)
    parents: dict[str, Relation | None] = dict.fromkeys(starts)
    frontier = list(starts)
    for _ in range(4):
        nxt: list[str] = []
        for node in frontier:
            for rel in edges.get(node, []):
                if rel.component not in parents:
                    parents[rel.component] = rel
                    nxt.append(rel.component)
        frontier = nxt
        if top.component in parents:
            break
    if top.component not in parents:
        start = starts[0]
        first = ChainHop(component=start, relation="its alert fired", evidence=alert_services[start][:1])
        named = list(top.reporters.values())[:2]
        why = "; ".join(f"{r.reporter} reports {r.error_class}: {r.sample[:100]}" for r in named) or "moved first"
        cites = [r.id for r in named] + own
        last = ChainHop(component=top.component, relation=truncate(f"suspect: {why}", 300), evidence=cites)
        return [first, last]
    path: list[Relation] = []
    here = top.component
    step = parents.get(here)
    while step is not None:
        path.append(step)
        here = step.reporter
        step = parents.get(here)
    path.reverse()
    hops = [ChainHop(component=here, relation="its alert fired", evidence=alert_services.get(here, [])[:1])]
    for rel in path:
        if rel.source == "trace":
            relation = f"{rel.reporter} calls it; spans: {rel.sample[:160]}"
        else:
            relation = f"{_says(rel)} ({rel.count} events): {rel.sample[:120]}"
        evidence = [rel.id] + (own if rel.component == top.component else [])
        hops.append(ChainHop(component=rel.component, relation=truncate(relation, 300), evidence=evidence))
    return hops


def trace_relations(
    blames: Sequence[ServiceBlame], services: Sequence[str]
) -> list[tuple[Relation, ServiceBlame | None]]:
    """Relations from the call graph: for each node blamed above TRACE_MIN_SCORE, the call into it (strong, with
    the blame) and the calls on the path from the entry service to it (weak: they only carry the chain)."""
    found: dict[tuple[str, str], tuple[Relation, ServiceBlame | None]] = {}
    for blamed in blames:
        if blamed.score < TRACE_MIN_SCORE:
            continue
        path = list(blamed.chain) if blamed.chain and blamed.chain[-1] == blamed.service else [*blamed.chain]
        if not path or path[-1] != blamed.service:
            path.append(blamed.service)
        for caller, callee in pairwise(path):
            last = callee == blamed.service
            known = found.get((caller, callee))
            if known is not None and (known[1] is not None or not last):
                continue
            kind = EntityKind.SERVICE if callee in services else EntityKind.HOST
            latency = blamed.latency_score > blamed.error_score
            rel = Relation(
                caller,
                callee,
                kind,
                ("slow calls" if latency else "failing calls") if last else "calls",
                TRACE_SPECIFICITY if last else TRACE_PATH_SPECIFICITY,
                weight=1.0 + 20.0 * blamed.score if last else 1.0,
                sample=truncate(blamed.reason if last else f"on the call path to {blamed.service}", 300),
                source="trace",
            )
            found[(caller, callee)] = (rel, blamed if last else None)
    return list(found.values())


def _named_by(reported: Sequence[Relation]) -> list[str]:
    """Who names a suspect, said as what they are: errors in logs, an alert's rule, spans, services on a node."""
    wordings: dict[str, set[str]] = defaultdict(set)
    for rel in reported:
        key = "trace" if rel.source == "trace" else rel.error_class
        wordings[_NAMED_BY.get(key, "named by the errors of {}")].add(rel.reporter)
    return [wording.format(", ".join(sorted(names)[:4])) for wording, names in wordings.items()]


def _says(rel: Relation, target: str = "it") -> str:
    if rel.source == "trace":
        return f"{rel.reporter} → {target}: {rel.error_class} in its spans"
    if rel.error_class == "runs-on":
        return f"{rel.reporter} runs on {target} and its errors surged"
    return f"{rel.reporter} reports {rel.error_class} naming {target}"


def relation_evidence(rels: Sequence[Relation]) -> list[Evidence]:
    return [
        Evidence(
            id=r.id,
            kind="relation",
            title=truncate(f"{_says(r, r.component)} ({r.kind.value})", 300),
            count=r.count,
            first_seen=r.first_seen,
            services=[r.reporter],
            data={
                "reporter": r.reporter,
                "component": r.component,
                "entity_kind": r.kind.value,
                "error_class": r.error_class,
                "surge_weight": round(r.weight, 3),
                "category": r.category.value if r.category else None,
                "sample": r.sample,
            },
        )
        for r in rels
    ]


def suspect_evidence(suspects: Sequence[Suspect]) -> list[Evidence]:
    return [
        Evidence(
            id=truncate(f"suspect:{s.component}", 120),
            kind="suspect",
            title=truncate(f"#{rank} {s.component} ({s.kind}, score {s.score:g}): {'; '.join(s.reasons)}", 300),
            first_seen=s.onset,
            services=s.reporters[:5],
            data={
                "rank": rank,
                "score": s.score,
                "category": s.category.value if s.category else None,
                "cites": s.evidence[:8],
            },
        )
        for rank, s in enumerate(suspects, start=1)
    ]
