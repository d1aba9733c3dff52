"""The analysis pipeline: bundle → normalise (per service) → templates → fingerprints → detectors (with deploys)
→ metric change points and window anomalies → what changed at the pivot (`localise`: template surges) →
correlation → localisation (suspects, chain) → classification pooled with the top suspect's failure → report
(category, confidence, severity, root cause with its chain, evidence, actions). This module assembles; the
intermediate data lives in `models`.

Every evidence item has a stable id (`suspect:…`, `relation:…`, `detector:…`, `error:…`, `deploy:…`,
`log:tpl-…`, `anomaly:tpl-…`, `alert:…`, `metric:…`) and every recommended action and chain hop cites ids that
exist in the report's evidence.

Pivot: the earliest firing alert's start, else the first metric change. Onset: the first error-like event of a
template that surged at the pivot, or the pivot's alert; when the logs and alerts have none, the earliest metric
change. Features weigh findings by their surge, so the residue of an earlier fault counts ~0. Window anomalies
compare the events from the onset on against those before it (the baseline).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from vigil.analysis import metric_anomalies as metric_module
from vigil.analysis.anomalies import LogAnomaly, window_anomalies
from vigil.analysis.bundle import Bundle, Deploy
from vigil.analysis.classify import Classifier, Features, classify, shrunk, with_suspect_votes
from vigil.analysis.correlate import (
    SUSPECT_SCORE,
    affected_services,
    deploy_evidence_ids,
    onset_of,
    rank_deploys,
)
from vigil.analysis.detectors import SEVERITY_ORDER, DeployMarker, detect
from vigil.analysis.fingerprints import as_utc, default_template_of, fingerprint_errors, is_error, truncate
from vigil.analysis.localise import (
    Localisation,
    alert_service,
    finding_weight,
    firing_alerts,
    incident_onset,
    localise,
    metric_shifts,
    pivot_of,
    relation_evidence,
    spread_weight,
    surge_keys,
    suspect_evidence,
    template_surges,
)
from vigil.analysis.models import (
    Action,
    Category,
    ErrorFingerprint,
    Evidence,
    Extracted,
    Finding,
    Level,
    LogEvent,
    MetricChange,
    RootCause,
    Suspect,
)
from vigil.analysis.normalise import normalise
from vigil.analysis.resources import metric_category, rule_category
from vigil.analysis.templates import TemplateMiner
from vigil.analysis.timeline import TimelineEntry, timeline

# Defined in `models` (shared with `localise`), exported from here too, where the pipeline's users found them.
__all__ = [
    "Action",
    "AnalysisReport",
    "Evidence",
    "Extracted",
    "MetricChange",
    "RootCause",
    "analyze",
    "extract",
    "features_of",
    "is_app_exception",
    "metric_evidence_id",
]

Progress = Callable[[str], None]
_WORD = re.compile(r"[a-z][a-z]{2,24}")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_STOP_WORDS = "the and for with from that this was were are not has have had into after before while when then than its"
_STOP = frozenset(f"{_STOP_WORDS} var num uuid hex path url".split())
_ALERT_LABELS = ("severity", "component", "team", "category", "kind", "type", "resource")
DEPLOY_NEAR = timedelta(minutes=30)
MAX_FINGERPRINTS = 20
MAX_TEMPLATES = 8
MAX_DEPLOYS = 5  # deploy evidence beyond the suspects' own: the likeliest, not every deploy of the lookback
MAX_LOG_ANOMALIES = 8
MIN_BASELINE = timedelta(minutes=1)
RESIDUE_FLOOR = 0.05  # the least weight of a finding's features: there, but weighing ~nothing
# The votes of each firing alert whose rule measures a resource, beside the top suspect's: with nothing else, the
# resource's category at about 0.5. The rule says what ran out, not why (a leak shipped by a deploy fires a memory
# rule), so an alert alone stays a hypothesis; on published rules (`eval/alertcategory`) the named resource was
# the labelled category 93-100% of the time, an upper bound since those labels are the resource itself.
RULE_VOTE = 4.0
# How much of the classifier's answer an incident keeps when nothing was observed besides its alerts (no log, metric,
# span or deploy): the model learned from incidents with logs, and an alert's words alone are its weakest input
# (the generated corpus taught it `HighLatency` -> capacity at ~1.0; kept at a quarter, 0.32).
ALERTS_ONLY_KEEP = 0.25


class AnalysisReport(BaseModel):
    category: Category
    confidence: float
    probabilities: dict[str, float]
    classifier: str
    severity: str
    code_related: bool
    root_cause: RootCause
    onset: datetime | None
    services: list[str]
    findings: list[Finding]
    evidence: list[Evidence]
    recommended_actions: list[Action]
    timeline: list[TimelineEntry]
    stats: dict[str, int]
    first_movers: list[str] = Field(
        default_factory=list, description="Evidence ids of the metrics that changed, earliest change first."
    )
    onset_source: str | None = Field(default=None, description="'logs' (errors, findings, alerts) or 'metrics'.")
    similarity: float | None = Field(
        default=None, description="Jaccard similarity of the features to the nearest training incident."
    )
    suspects: list[Suspect] = Field(
        default_factory=list, description="Components that may have caused it, most likely first (`localise`)."
    )


def metric_evidence_id(name: str, labels: dict[str, str]) -> str:
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"metric:{name}" + (f"{{{text}}}" if text else "")


def _metric_changes(bundle: Bundle) -> list[MetricChange]:
    """Series with a change point or an outlier, first movers first (ties: higher score)."""
    series = [metric_module.MetricSeries(name=m.name, labels=m.labels, points=m.points) for m in bundle.metrics]
    out: list[MetricChange] = []
    seen: set[str] = set()
    for anomaly in metric_module.metric_anomalies(series):
        mid = metric_evidence_id(anomaly.name, anomaly.labels)
        if mid not in seen:
            seen.add(mid)
            out.append(MetricChange(mid, metric_category(anomaly.name, anomaly.labels), anomaly))
    return out


def _metric_findings(changes: Sequence[MetricChange]) -> list[Finding]:
    """One finding per category of resource metrics that moved: their change is evidence of that category."""
    by_category: dict[Category, list[MetricChange]] = defaultdict(list)
    for change in changes:
        if change.category is not None and change.anomaly.change_points:
            by_category[change.category].append(change)
    out = []
    for category, moved in by_category.items():
        stamps = [c.onset for c in moved if c.onset is not None]
        lead = moved[0].anomaly.change_points[0]
        title = f"{moved[0].id} changed {lead.direction} from {lead.before:g} to {lead.after:g}"
        if len(moved) > 1:
            title += f" (and {len(moved) - 1} more {category.value} series)"
        out.append(
            Finding(
                id=f"detector:metric-{category.value}",
                detector=f"metric-{category.value}",
                category=category,
                title=title,
                severity="warning",
                count=sum(len(c.anomaly.change_points) for c in moved),
                first_seen=min(stamps) if stamps else None,
                last_seen=max(stamps) if stamps else None,
                services=[],
                evidence=[c.id for c in moved],
            )
        )
    return out


def _log_anomalies(
    events: Sequence[LogEvent], ids: Sequence[str], miner: TemplateMiner, onset: datetime | None
) -> list[LogAnomaly]:
    """New templates and frequency spikes from `onset` on, against the events before it."""
    if onset is None:
        return []
    timed = [(as_utc(e.ts), tid, e.message) for e, tid in zip(events, ids, strict=True) if e.ts is not None]
    if not timed:
        return []
    start = min(t for t, _, _ in timed)
    end = max(t for t, _, _ in timed)
    if onset - start < MIN_BASELINE or end <= onset:
        return []
    baseline = [k for k in timed if k[0] < onset]
    window = [k for k in timed if k[0] >= onset]
    return window_anomalies(
        window,
        baseline,
        window_seconds=max((end - onset).total_seconds(), 60.0),
        baseline_seconds=(onset - start).total_seconds(),
        miner=miner,
        limit=MAX_LOG_ANOMALIES,
    )


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _events(bundle: Bundle) -> list[LogEvent]:
    by_service: dict[str | None, list[int]] = defaultdict(list)
    for i, record in enumerate(bundle.logs):
        by_service[record.service].append(i)
    out: list[LogEvent] = []
    for service, indexes in by_service.items():
        records = [bundle.logs[i] for i in indexes]
        for event in normalise((r.line for r in records), service=service):
            if event.ts is None and 0 < event.line <= len(records):
                event.ts = records[event.line - 1].ts
            out.append(event)
    return out


def _noop(_: str) -> None:
    return None


def extract(bundle: Bundle, progress: Progress = _noop) -> Extracted:
    events = _events(bundle)
    progress("normalised")
    miner = TemplateMiner()
    ids = [miner.add(e.message).template_id for e in events]
    progress("templates")
    templates_of: dict[str, str] = {}

    def template_of(message: str) -> str:
        cached = templates_of.get(message)
        if cached is None:
            found = miner.match(message)
            cached = templates_of[message] = found.template if found is not None else default_template_of(message)
        return cached

    counts: Counter[str] = Counter()
    bad_counts: Counter[str] = Counter()
    for event, tid in zip(events, ids, strict=True):
        live = miner.resolve(tid)
        counts[live] += 1
        if is_error(event) or event.level is Level.WARNING:
            bad_counts[live] += 1
    templates = [(tid, miner.template(tid) or "", n, bad_counts[tid]) for tid, n in counts.items()]
    fingerprints = fingerprint_errors(events, template_of=template_of)
    markers = [DeployMarker(ts=d.ts, service=d.service, version=d.ref) for d in bundle.deploys]
    findings = detect(events, fingerprints=fingerprints, deploys=markers, template_of=template_of)
    progress("detected")
    resolved = [miner.resolve(tid) for tid in ids]
    metrics = _metric_changes(bundle)
    metric_onsets = [m.onset for m in metrics if m.onset is not None]
    pivot = pivot_of(bundle.alerts, metric_onsets, onset_of(bundle.alerts, findings, fingerprints))
    keys = surge_keys(events, resolved)
    surges = template_surges(events, keys, pivot)
    stamps = [as_utc(e.ts) for e in events if e.ts is not None]
    start, end = (min(stamps), max(stamps)) if stamps else (None, None)
    onset = incident_onset(events, keys, surges, pivot, bundle.alerts)
    onset_source = "logs" if onset is not None else None
    if onset is None and metric_onsets:
        onset, onset_source = min(metric_onsets), "metrics"
    findings += _metric_findings(metrics)
    weights = {f.id: finding_weight(f, pivot, start, end) for f in findings}
    weights |= {fp.id: spread_weight(fp.count, fp.first_seen, fp.last_seen, pivot, start, end) for fp in fingerprints}
    services = affected_services(bundle.alerts, findings, fingerprints)
    deploys = rank_deploys(bundle.deploys, onset, services)
    new_exc = _new_exception_after_deploy(fingerprints, bundle.deploys)
    extracted = Extracted(bundle, events, templates, fingerprints, findings, deploys, onset, services, new_exc)
    extracted.template_ids = resolved
    extracted.surge_keys = keys
    extracted.pivot = pivot
    extracted.surges = surges
    extracted.finding_weights = weights
    extracted.metrics = metric_shifts(bundle, metrics, pivot or onset, _known_services(bundle, events))
    extracted.log_anomalies = _log_anomalies(events, ids, miner, onset)
    extracted.onset_source = onset_source
    extracted.features = features_of(extracted)
    return extracted


def _known_services(bundle: Bundle, events: Sequence[LogEvent]) -> list[str]:
    names = [e.service for e in events if e.service] + [d.service for d in bundle.deploys]
    names += [a.labels[k] for a in bundle.alerts for k in ("service", "job", "app") if a.labels.get(k)]
    return list(dict.fromkeys(names))


def _new_exception_after_deploy(fingerprints: Sequence[ErrorFingerprint], deploys: Sequence[Deploy]) -> bool:
    """An exception type in application frames first seen within minutes after a deploy of its service."""
    for fp in fingerprints:
        if fp.exception_type is None or fp.first_seen is None or fp.frame is None:
            continue
        if any(s in fp.frame for s in ("site-packages", "/usr/lib", "java.", "sun.", "jdk.")):
            continue
        first = as_utc(fp.first_seen)
        for deploy in deploys:
            at = as_utc(deploy.ts)
            if at <= first <= at + timedelta(minutes=15) and (not fp.services or deploy.service in fp.services):
                return True
    return False


def features_of(x: Extracted) -> Features:
    import math

    f: Features = {}

    def add(name: str, value: float = 1.0) -> None:
        f[name] = f.get(name, 0.0) + value

    # Weighed by what changed at the onset (`localise`): the residue of an earlier fault counts ~0.
    for finding in x.findings:
        weight = math.log1p(finding.count) * max(x.finding_weights.get(finding.id, 1.0), RESIDUE_FLOOR)
        add(f"det:{finding.detector}", weight)
        add(f"detcat:{finding.category.value}", weight)
    for fp in x.fingerprints[:MAX_FINGERPRINTS]:
        if x.finding_weights.get(fp.id, 1.0) < RESIDUE_FLOOR:
            continue
        if fp.exception_type:
            add(f"exc:{fp.exception_type.rsplit('.', 1)[-1].lower()}")
        for word in _words(fp.template):
            f[f"tok:{word}"] = 1.0
    for tid, template, _, bad in sorted(x.templates, key=lambda t: -t[3])[:MAX_TEMPLATES]:
        if bad and x.surges.get(tid, 1.0) >= RESIDUE_FLOOR:
            for word in _words(template):
                f[f"tok:{word}"] = 1.0
    for alert in x.bundle.alerts:
        name = alert.name
        f[f"alert:{name.lower()}"] = 1.0
        for part in _CAMEL.findall(name):
            if len(part) > 2:
                f[f"atok:{part.lower()}"] = 1.0
        for key in _ALERT_LABELS:
            if key in alert.labels:
                f[f"alabel:{key}={alert.labels[key].lower()[:40]}"] = 1.0
        for text in (alert.annotations.get("summary", ""), alert.annotations.get("description", "")):
            for word in _words(text):
                f[f"atok:{word}"] = 1.0
    near = [d for d in x.deploys if d.minutes_before_onset is not None and 0 <= d.minutes_before_onset <= 30]
    if near:
        f["deploy:near"] = 1.0
        if any(d.same_service for d in near):
            f["deploy:near_same_service"] = 1.0
        for d in near:
            for word in _words(d.description or ""):
                f[f"dtok:{word}"] = 1.0
    if x.deploys:
        f["deploy:any"] = 1.0
    if any(finding.detector == "bad-deploy" for finding in x.findings):
        f["deploy:bad"] = 1.0
    if x.new_exception_after_deploy:
        f["deploy:new_exc_after"] = 1.0
    if _deploy_brought_exceptions(x):
        f["deploy:app_exc_after"] = 1.0
    if not x.findings:
        f["det:none"] = 1.0
    return f


# -- report ---------------------------------------------------------------------------------------------------

_RESOURCE = {
    Category.DATABASE: "database",
    Category.NETWORK: "network",
    Category.COMPUTE: "cpu",
    Category.MEMORY: "memory",
    Category.STORAGE: "disk",
    Category.DEPLOYMENT: "deploy",
    Category.DEPENDENCY: "upstream",
    Category.CONFIGURATION: "config",
    Category.CAPACITY: "capacity",
    Category.SECURITY: "security",
}

_DETECTOR_ACTIONS: dict[str, str] = {
    "oom-killed": "Raise the memory limit or fix the leak; check heap/RSS growth before the kills",
    "memory-pressure": "Check memory usage trend and GC; scale out or raise limits before OOM kills start",
    "db-pool-exhausted": "Check for long-running queries/transactions holding connections; size the pool",
    "db-connection-refused": "Check the database is up and reachable (host, port, failover); restart or fail over",
    "db-deadlock": "Find the conflicting transactions in the DB logs; order lock acquisition consistently",
    "db-slow-queries": "Inspect the slow queries' plans (EXPLAIN); add the missing index or cancel runaway queries",
    "connection-refused": "Check the target service is running and listening; check recent network policy changes",
    "timeouts": "Find which hop times out (traces); check the callee's latency and saturation",
    "upstream-unavailable": "Check the upstream's status; enable the fallback or circuit breaker; contact its owner",
    "cpu-saturation": "Find the hot process (top/profiles); scale out or throttle the offending workload",
    "slow-requests": "Check request latency by route and the saturation of the service; scale out if load-bound",
    "disk-full": "Free space (logs, temp files, old data) or grow the volume; find what filled it",
    "disk-usage-high": "Plan space: rotate/compress logs, grow the volume before it fills",
    "io-errors": "Check the disk/volume health (dmesg, SMART, cloud volume status); fail over if degraded",
    "crash-loop": "Read the crashing container's last logs and exit code; roll back if it started after a deploy",
    "tls-failures": "Check certificate validity and chain on both ends; renew or fix the trust store",
    "cert-expiring": "Renew the certificate before it expires; check the renewal automation",
    "dns-failures": "Check DNS resolution from the affected hosts (resolver, records, CoreDNS health)",
    "rate-limited": "Reduce the call rate (backoff, caching) or raise the quota with the provider",
    "auth-failures": "Check for credential rotation/expiry or an attack (source IPs); block or rotate as needed",
    "http-5xx-spike": "Find the failing routes and their errors; roll back or fail over the failing component",
    "bad-deploy": "Roll back the deploy that preceded the errors, then investigate the change",
}

_CATEGORY_ACTIONS: dict[Category, str] = {
    Category.DATABASE: "Check database health: connections, replication, locks, disk; fail over if the primary is down",
    Category.NETWORK: "Check connectivity between the affected services (DNS, routes, security groups, mesh)",
    Category.COMPUTE: "Check CPU/node health of the affected hosts; reschedule or scale out",
    Category.MEMORY: "Check memory usage and limits of the affected containers; restart leaking processes",
    Category.STORAGE: "Check volumes of the affected hosts: free space, I/O errors, mount state",
    Category.DEPLOYMENT: "Roll back the most recent deploy of the affected service and compare its errors",
    Category.DEPENDENCY: "Check the status of the failing dependency; degrade gracefully until it recovers",
    Category.CONFIGURATION: "Diff the recent configuration change against the last good one and revert it",
    Category.CAPACITY: "Scale out the saturated tier; shed or queue load until it catches up",
    Category.SECURITY: "Check certificates, credentials and access logs; rotate secrets if compromise is possible",
}


def _severity(alerts: Sequence[Any], findings: Sequence[Finding]) -> str:
    """The most severe of the alerts' own severities: the people who wrote the rules know the impact. The
    detectors' severities (a log line's wording) decide only when no alert came with the evidence."""
    mapping = {"critical": "critical", "page": "critical", "high": "high", "error": "high", "major": "high"}
    mapping |= {"warning": "warning", "warn": "warning", "minor": "warning", "info": "info", "none": "info"}
    levels = [mapping.get(a.labels.get("severity", "").lower(), "warning") for a in alerts]
    if not levels:
        levels = [f.severity for f in findings]
    return min(levels, key=lambda s: SEVERITY_ORDER.get(s, 9)) if levels else "info"


def _evidence(x: Extracted, cited: set[str], measures: dict[str, Category | None]) -> list[Evidence]:
    """Evidence of the findings, errors, deploys (the likeliest few and those a suspect cites), templates, alerts
    and anomalies; every deploy stays on the timeline."""
    out: list[Evidence] = []
    for finding in x.findings:
        out.append(
            Evidence(
                id=finding.id,
                kind="detector",
                title=finding.title,
                count=finding.count,
                first_seen=finding.first_seen,
                services=finding.services,
                data={"category": finding.category.value, "severity": finding.severity, "samples": finding.samples},
            )
        )
    for fp in x.fingerprints[:MAX_FINGERPRINTS]:
        title = f"{fp.exception_type}: {fp.template}" if fp.exception_type else fp.template
        out.append(
            Evidence(
                id=fp.id,
                kind="error",
                title=truncate(title, 300),
                count=fp.count,
                first_seen=fp.first_seen,
                services=fp.services,
                data={"frame": fp.frame, "sample": fp.sample},
            )
        )
    for d in (d for rank, d in enumerate(x.deploys) if rank < MAX_DEPLOYS or d.id in cited):
        title = f"deploy of {d.service} {d.version or ''} {d.commit or ''}".strip()
        out.append(
            Evidence(
                id=d.id,
                kind="deploy",
                title=truncate(title, 300),
                first_seen=d.ts,
                services=[d.service],
                data={
                    "score": d.score,
                    "minutes_before_onset": d.minutes_before_onset,
                    "same_service": d.same_service,
                    "author": d.author,
                    "description": d.description and truncate(d.description, 300),
                },
            )
        )
    bad = sorted((t for t in x.templates if t[3]), key=lambda t: (-t[3], t[0]))[:MAX_TEMPLATES]
    for tid, template, count, bad_count in bad:
        out.append(
            Evidence(
                id=f"log:tpl-{tid}",
                kind="log-template",
                title=truncate(template, 300),
                count=count,
                data={"error_or_warning": bad_count},
            )
        )
    seen: set[str] = set()
    for alert in x.bundle.alerts:
        aid = f"alert:{alert.name}"
        if aid in seen:
            continue
        seen.add(aid)
        summary = alert.annotations.get("summary") or alert.annotations.get("description") or alert.name
        measured = measures[alert.name]
        out.append(
            Evidence(
                id=aid,
                kind="alert",
                title=truncate(summary, 300),
                first_seen=alert.starts_at,
                data={"labels": alert.labels, "status": alert.status, "measures": measured and measured.value},
            )
        )
    for anomaly in x.log_anomalies:
        out.append(
            Evidence(
                id=f"anomaly:tpl-{anomaly.template_id}",
                kind="log-anomaly",
                title=truncate(f"{anomaly.kind.value} template: {anomaly.template or anomaly.example}", 300),
                count=anomaly.count,
                first_seen=anomaly.first_seen,
                data={
                    "anomaly": anomaly.kind.value,
                    "score": anomaly.score,
                    "baseline_count": anomaly.baseline_count,
                    "window_rate_per_min": anomaly.window_rate,
                    "baseline_rate_per_min": anomaly.baseline_rate,
                    "ratio": anomaly.ratio,
                    "example": anomaly.example,
                },
            )
        )
    moved = {m.id: (rank, m) for rank, m in enumerate(x.metrics)}
    for series in x.bundle.metrics:
        if not series.points:
            continue
        values = [v for _, v in sorted(series.points)]
        mid = metric_evidence_id(series.name, series.labels)
        if mid in seen:
            continue
        seen.add(mid)
        data: dict[str, Any] = {"min": min(values), "max": max(values), "last": values[-1], "changed": mid in moved}
        first_seen = None
        if mid in moved:
            rank, change = moved[mid]
            first_seen = change.onset
            data |= {
                "first_mover_rank": rank,
                "score": change.anomaly.score,
                "category": change.category.value if change.category else None,
                "change_points": [
                    {
                        "ts": datetime.fromtimestamp(c.ts, UTC).isoformat(),
                        "direction": c.direction,
                        "before": c.before,
                        "after": c.after,
                        "score": c.score,
                    }
                    for c in change.anomaly.change_points
                ],
                "outliers": len(change.anomaly.anomalous_points),
            }
        out.append(
            Evidence(
                id=mid,
                kind="metric",
                title=f"{series.name}: last {values[-1]:g} (min {min(values):g}, max {max(values):g})",
                count=len(values),
                first_seen=first_seen,
                data=data,
            )
        )
    return out


_LIBRARY_FRAMES = (
    "site-packages",
    "dist-packages",
    "/usr/lib",
    "/usr/local/lib",
    "node_modules",
    "/usr/local/go/",
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "org.springframework.",
    "org.apache.",
    "org.hibernate.",
    "com.zaxxer.",
    "io.netty.",
    "<frozen",
)
# Errors of the environment rather than of the code, whatever frame raised them.
_INFRA_ERROR = re.compile(
    r"connection ?refused|refused|timed? ?out|timeout|deadline exceeded|no space left|disk quota|read-only file"
    r"|out ?of ?memory|memoryerror|oom|cannot allocate|certificate|ssl|tls|x509|handshake|name resolution"
    r"|unknownhost|name or service not known|nxdomain|\bdns\b|too many (?:connections|clients|requests)"
    r"|connection is not available|connection reset|broken pipe|unreachable|no route to host|unavailable"
    r"|rate limit|\b(?:429|502|503|504)\b|could not connect|remaining connection slots|i/o error|ioerror",
    re.IGNORECASE,
)
# Causes that lie in the platform, not in a change of the code: code_related stays false for them unless a
# deploy brought new application exceptions.
_INFRA_CATEGORIES = frozenset(
    {Category.NETWORK, Category.COMPUTE, Category.MEMORY, Category.STORAGE, Category.CAPACITY, Category.SECURITY}
)


def is_app_exception(fp: ErrorFingerprint, findings: Sequence[Finding] = ()) -> bool:
    """An exception raised in application frames, not an infrastructure error (refused, full disk, TLS...).

    An error that an infrastructure detector matched (its id in the finding's evidence) is not one either.
    """
    if fp.exception_type is None or fp.frame is None or any(s in fp.frame for s in _LIBRARY_FRAMES):
        return False
    if _INFRA_ERROR.search(f"{fp.exception_type} {fp.template} {fp.sample}"):
        return False
    code_categories = (Category.DEPLOYMENT, Category.CONFIGURATION)
    return not any(fp.id in f.evidence and f.category not in code_categories for f in findings)


def _deploy_brought_exceptions(x: Extracted) -> bool:
    """A deploy of a service, then application exceptions in it first seen within 15 minutes."""
    for fp in x.fingerprints:
        if fp.first_seen is None or not is_app_exception(fp, x.findings):
            continue
        first = as_utc(fp.first_seen)
        for deploy in x.bundle.deploys:
            at = as_utc(deploy.ts)
            if at <= first <= at + timedelta(minutes=15) and (not fp.services or deploy.service in fp.services):
                return True
    return False


def _code_related(x: Extracted, category: Category, suspect: Suspect | None = None) -> bool:
    """Rule-based: is the fix a change of the code (rollback, patch) rather than of the platform?

    True when a deploy brought new application exceptions, when the most frequent error is an application
    exception (and the cause is not the platform's), or for a deployment with a suspect deploy; false for
    infrastructure causes (full disk, OOM, expired certificate, DNS...) without such a deploy.
    """
    if x.features.get("deploy:app_exc_after"):
        return True
    if category in _INFRA_CATEGORIES:
        return False
    if suspect is not None and suspect.kind != "service":  # a host, a domain, a bucket...: not our code
        return False
    if x.fingerprints and is_app_exception(x.fingerprints[0], x.findings):
        return True
    suspect_deploys = [d for d in x.deploys if d.score >= SUSPECT_SCORE]
    return category is Category.DEPLOYMENT and (bool(suspect_deploys) or bool(x.features.get("deploy:bad")))


def _root_cause(x: Extracted, category: Category, evidence: Sequence[Evidence], loc: Localisation) -> RootCause:
    """The top suspect (`localise`) with the chain that leads to it; without suspects, the alerts' service."""
    mine = [f for f in x.findings if f.category is category]
    top = loc.suspects[0] if loc.suspects else None
    if top is not None:
        service = top.component
    else:
        candidates = mine[0].services if mine and mine[0].services else x.services
        ranked = [s for s in x.services if s in candidates]  # the alerts' service first, when the finding has it
        service = (ranked or candidates or ["unknown"])[0]
    resource = _RESOURCE[category]
    deploy = next((d for d in x.deploys if d.service == service and d.minutes_before_onset is not None), None)
    if category is Category.DEPLOYMENT and deploy is None and top is None and x.deploys:
        deploy = x.deploys[0]
        service = deploy.service
    if category is Category.DEPLOYMENT and deploy is not None:
        resource = f"deploy {deploy.version or deploy.commit}"
    own = [f for f in mine if service in f.services] or mine
    if own:
        lead = own[0]
        summary = f"{category.value}: {lead.title} ({lead.count} events, {lead.id}) in {service}"
    elif x.fingerprints:
        fp = x.fingerprints[0]
        summary = f"{category.value}: most frequent error {fp.exception_type or ''} {fp.template}".strip()
        summary = truncate(summary + f" ({fp.count}x, {fp.id}) in {service}", 400)
    elif top is not None and top.reasons:
        summary = f"{category.value}: {service}: {'; '.join(top.reasons)}"
    elif evidence:
        summary = f"{category.value}: {evidence[0].title}"
    else:
        summary = f"{category.value}: no evidence in the bundle"
    if len(loc.chain) > 1:
        summary = f"{summary}; chain {' -> '.join(h.component for h in loc.chain)}"
    if category is Category.DEPLOYMENT and deploy is not None:
        summary += f"; suspect {deploy.id} ({deploy.minutes_before_onset} min before onset)"
    known = {e.id for e in evidence}
    chain = [h.model_copy(update={"evidence": [e for e in h.evidence if e in known]}) for h in loc.chain]
    return RootCause(
        summary=truncate(summary, 500),
        component=f"{service}/{resource}",
        chain=chain,
        confidence=loc.confidence if top is not None else None,
    )


def _actions(x: Extracted, category: Category, evidence: Sequence[Evidence], code_related: bool) -> list[Action]:
    known = {e.id for e in evidence}
    actions: list[Action] = []
    mine = [f for f in x.findings if f.category is category]
    general_cites = [f.id for f in mine[:3]] or [e.id for e in evidence if e.kind in ("error", "alert")][:3]
    if general_cites:
        actions.append(Action(action=_CATEGORY_ACTIONS[category], evidence=general_cites))
    if code_related and x.deploys and x.deploys[0].score >= SUSPECT_SCORE / 2:
        top = x.deploys[0]
        cites = [top.id] + [f.id for f in x.findings if f.detector == "bad-deploy"]
        actions.append(
            Action(action=f"Roll back {top.service} to the version before {top.version or top.commit}", evidence=cites)
        )
    for finding in x.findings[:5]:
        text = _DETECTOR_ACTIONS.get(finding.detector)
        if text:
            cites = [finding.id, *[e for e in finding.evidence if e in known][:2]]
            actions.append(Action(action=text, evidence=cites))
    if not actions and evidence:
        actions.append(
            Action(
                action="Review the listed evidence; no detector matched a known failure mode", evidence=[evidence[0].id]
            )
        )
    for action in actions:
        action.evidence = [e for e in dict.fromkeys(action.evidence) if e in known]
    return [a for a in actions if a.evidence]


def _alert_ids(bundle: Bundle) -> dict[str, list[str]]:
    """Alerting service → its alerts' evidence ids (`alert:<name>`), firing alerts only."""
    out: dict[str, list[str]] = {}
    for alert in firing_alerts(bundle.alerts):
        service = alert_service(alert)
        if service:
            out.setdefault(service, [])
            if f"alert:{alert.name}" not in out[service]:
                out[service].append(f"alert:{alert.name}")
    return out


def _rule_measures(bundle: Bundle) -> dict[str, Category | None]:
    """Alert name -> the resource its rule measures (read from the first alert of that name)."""
    measures: dict[str, Category | None] = {}
    for alert in bundle.alerts:
        if alert.name not in measures:
            measures[alert.name] = rule_category(alert)
    return measures


def analyze(bundle: Bundle, *, classifier: Classifier | None = None, progress: Progress = _noop) -> AnalysisReport:
    x = extract(bundle, progress)
    deploy_ids = deploy_evidence_ids(bundle.deploys)
    loc = localise(x, alert_ids=_alert_ids(bundle), deploy_ids=dict(enumerate(deploy_ids)))
    votes = {k.value: v for k, v in loc.category_votes.items()}
    measures = _rule_measures(bundle)
    firing = {alert.name for alert in bundle.alerts if (alert.status or "firing") == "firing"}
    # One vote per firing alert name: the rule's author named the resource.
    for category in (c for name in firing if (c := measures[name]) is not None):
        votes[category.value] = votes.get(category.value, 0.0) + RULE_VOTE
    prediction = classify(x.features, classifier)
    if not (bundle.logs or bundle.metrics or bundle.traces or bundle.deploys):
        prediction = shrunk(prediction, ALERTS_ONLY_KEEP)
    prediction = with_suspect_votes(prediction, votes)
    progress("classified")
    cited = {evidence_id for suspect in loc.suspects for evidence_id in suspect.evidence}
    evidence = [*suspect_evidence(loc.suspects), *relation_evidence(loc.relations), *_evidence(x, cited, measures)]
    category = prediction.category
    code_related = _code_related(x, category, loc.suspects[0] if loc.suspects else None)
    markers = [
        DeployMarker(ts=d.ts, service=d.service, version=d.ref, evidence_id=evidence_id)
        for d, evidence_id in zip(bundle.deploys, deploy_ids, strict=True)
    ]
    return AnalysisReport(
        category=category,
        confidence=round(prediction.confidence, 4),
        probabilities=prediction.probabilities,
        classifier=prediction.source,
        severity=_severity(bundle.alerts, x.findings),
        code_related=code_related,
        root_cause=_root_cause(x, category, evidence, loc),
        suspects=loc.suspects,
        onset=x.onset,
        services=x.services,
        findings=x.findings,
        evidence=evidence,
        recommended_actions=_actions(x, category, evidence, code_related),
        timeline=timeline(x.events, x.fingerprints, x.findings, deploys=markers),
        first_movers=[m.id for m in x.metrics],
        onset_source=x.onset_source,
        similarity=prediction.similarity,
        stats={
            "log_records": len(bundle.logs),
            "events": len(x.events),
            "templates": len(x.templates),
            "error_fingerprints": len(x.fingerprints),
            "alerts": len(bundle.alerts),
            "deploys": len(bundle.deploys),
            "metrics": len(bundle.metrics),
            "metrics_changed": len(x.metrics),
            "log_anomalies": len(x.log_anomalies),
        },
    )
