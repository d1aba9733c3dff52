"""The analysis pipeline: bundle → normalise (per service) → templates → fingerprints → detectors (with deploys)
→ correlation → classification → report (category, confidence, severity, root cause, evidence, actions).

Every evidence item has a stable id (`detector:…`, `error:…`, `deploy:…`, `log:tpl-…`, `alert:…`,
`metric:…`) and every recommended action cites ids that exist in the report's evidence.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from vigil.analysis import bundle as bundle_module
from vigil.analysis.bundle import Bundle, BundleError, Deploy, load_bundle
from vigil.analysis.classify import Classifier, Features, classify
from vigil.analysis.correlate import SUSPECT_SCORE, DeployCorrelation, affected_services, onset_of, rank_deploys
from vigil.analysis.detectors import SEVERITY_ORDER, DeployMarker, detect
from vigil.analysis.fingerprints import as_utc, default_template_of, fingerprint_errors, is_error, truncate
from vigil.analysis.models import Category, ErrorFingerprint, Finding, Level, LogEvent
from vigil.analysis.normalise import normalise
from vigil.analysis.templates import TemplateMiner
from vigil.analysis.timeline import TimelineEntry, timeline

Progress = Callable[[str], None]
_WORD = re.compile(r"[a-z][a-z]{2,24}")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_STOP_WORDS = "the and for with from that this was were are not has have had into after before while when then than its"
_STOP = frozenset(f"{_STOP_WORDS} var num uuid hex path url".split())
_ALERT_LABELS = ("severity", "component", "team", "category", "kind", "type", "resource")
DEPLOY_NEAR = timedelta(minutes=30)
MAX_FINGERPRINTS = 20
MAX_TEMPLATES = 8


class Evidence(BaseModel):
    id: str
    kind: str
    title: str
    count: int | None = None
    first_seen: datetime | None = None
    services: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)


class RootCause(BaseModel):
    summary: str
    component: str


class Action(BaseModel):
    action: str
    evidence: list[str]


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


@dataclass
class Extracted:
    """The pipeline's intermediate results, up to the classifier's features."""

    bundle: Bundle
    events: list[LogEvent]
    templates: list[tuple[str, str, int, int]]  # id, template, count, error/warning count
    fingerprints: list[ErrorFingerprint]
    findings: list[Finding]
    deploys: list[DeployCorrelation]
    onset: datetime | None
    services: list[str]
    new_exception_after_deploy: bool
    features: Features = field(default_factory=dict)


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
    onset = onset_of(bundle.alerts, findings, fingerprints)
    services = affected_services(bundle.alerts, findings, fingerprints)
    deploys = rank_deploys(bundle.deploys, onset, services)
    new_exc = _new_exception_after_deploy(fingerprints, bundle.deploys)
    extracted = Extracted(bundle, events, templates, fingerprints, findings, deploys, onset, services, new_exc)
    extracted.features = features_of(extracted)
    return extracted


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

    for finding in x.findings:
        weight = math.log1p(finding.count)
        add(f"det:{finding.detector}", weight)
        add(f"detcat:{finding.category.value}", weight)
    for fp in x.fingerprints[:MAX_FINGERPRINTS]:
        if fp.exception_type:
            add(f"exc:{fp.exception_type.rsplit('.', 1)[-1].lower()}")
        for word in _words(fp.template):
            f[f"tok:{word}"] = 1.0
    for _, template, _, bad in sorted(x.templates, key=lambda t: -t[3])[:MAX_TEMPLATES]:
        if bad:
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
    mapping = {"critical": "critical", "page": "critical", "high": "high", "error": "high", "major": "high"}
    mapping |= {"warning": "warning", "warn": "warning", "minor": "warning", "info": "info", "none": "info"}
    levels = [mapping.get(a.labels.get("severity", "").lower(), "warning") for a in alerts]
    levels += [f.severity for f in findings]
    return min(levels, key=lambda s: SEVERITY_ORDER.get(s, 9)) if levels else "info"


def _evidence(x: Extracted) -> list[Evidence]:
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
    for d in x.deploys:
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
        out.append(
            Evidence(
                id=aid,
                kind="alert",
                title=truncate(summary, 300),
                first_seen=alert.starts_at,
                data={"labels": alert.labels, "status": alert.status},
            )
        )
    for series in x.bundle.metrics:
        if not series.points:
            continue
        values = [v for _, v in sorted(series.points)]
        half = len(values) // 2
        before, after = values[:half] or values, values[half:]
        mean_b, mean_a = sum(before) / len(before), sum(after) / len(after)
        changed = abs(mean_a - mean_b) > max(0.5 * abs(mean_b), 1e-9) if len(values) >= 4 else False
        labels = ",".join(f"{k}={v}" for k, v in sorted(series.labels.items()))
        mid = f"metric:{series.name}" + (f"{{{labels}}}" if labels else "")
        if mid in seen:
            continue
        seen.add(mid)
        out.append(
            Evidence(
                id=mid,
                kind="metric",
                title=f"{series.name}: last {values[-1]:g} (min {min(values):g}, max {max(values):g})",
                count=len(values),
                data={"min": min(values), "max": max(values), "last": values[-1], "naive_change": changed},
            )
        )
    return out


def _code_related(x: Extracted, category: Category) -> bool:
    if x.features.get("deploy:bad") or x.features.get("deploy:new_exc_after"):
        return True
    suspect = [d for d in x.deploys if d.score >= SUSPECT_SCORE]
    return category is Category.DEPLOYMENT and bool(suspect)


def _root_cause(x: Extracted, category: Category, evidence: Sequence[Evidence]) -> RootCause:
    mine = [f for f in x.findings if f.category is category]
    candidates = mine[0].services if mine and mine[0].services else x.services
    ranked = [s for s in x.services if s in candidates]  # the alerts' service first, when the finding has it
    service = (ranked or candidates or ["unknown"])[0]
    resource = _RESOURCE[category]
    if category is Category.DEPLOYMENT and x.deploys:
        top = x.deploys[0]
        service, resource = top.service, f"deploy {top.version or top.commit}"
    if mine:
        lead = mine[0]
        summary = f"{category.value}: {lead.title} ({lead.count} events, {lead.id}) in {service}"
    elif x.fingerprints:
        fp = x.fingerprints[0]
        summary = f"{category.value}: most frequent error {fp.exception_type or ''} {fp.template}".strip()
        summary = truncate(summary + f" ({fp.count}x, {fp.id}) in {service}", 400)
    elif evidence:
        summary = f"{category.value}: {evidence[0].title}"
    else:
        summary = f"{category.value}: no evidence in the bundle"
    if category is Category.DEPLOYMENT and x.deploys:
        summary += f"; suspect {x.deploys[0].id} ({x.deploys[0].minutes_before_onset} min before onset)"
    return RootCause(summary=truncate(summary, 500), component=f"{service}/{resource}")


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


def analyze(bundle: Bundle, *, classifier: Classifier | None = None, progress: Progress = _noop) -> AnalysisReport:
    x = extract(bundle, progress)
    prediction = classify(x.features, classifier)
    progress("classified")
    evidence = _evidence(x)
    category = prediction.category
    code_related = _code_related(x, category)
    markers = [DeployMarker(ts=d.ts, service=d.service, version=d.ref) for d in bundle.deploys]
    return AnalysisReport(
        category=category,
        confidence=round(prediction.confidence, 4),
        probabilities=prediction.probabilities,
        classifier=prediction.source,
        severity=_severity(bundle.alerts, x.findings),
        code_related=code_related,
        root_cause=_root_cause(x, category, evidence),
        onset=x.onset,
        services=x.services,
        findings=x.findings,
        evidence=evidence,
        recommended_actions=_actions(x, category, evidence, code_related),
        timeline=timeline(x.events, x.fingerprints, x.findings, deploys=markers),
        stats={
            "log_records": len(bundle.logs),
            "events": len(x.events),
            "templates": len(x.templates),
            "error_fingerprints": len(x.fingerprints),
            "alerts": len(bundle.alerts),
            "deploys": len(bundle.deploys),
            "metrics": len(bundle.metrics),
        },
    )


def run_analyze(path: str) -> int:
    """`vigil analyze BUNDLE.json|-`: the report as JSON on stdout; exit 2 with a message on bad input."""
    limit = bundle_module.MAX_BUNDLE_BYTES
    try:
        if path == "-":
            text = sys.stdin.buffer.read(limit + 1)
        else:
            size = Path(path).stat().st_size
            if size > limit:
                print(f"error: bundle too large: {size} bytes (limit {limit})", file=sys.stderr)
                return 2
            text = Path(path).read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(text)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = analyze(bundle)
    sys.stdout.write(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    return 0
