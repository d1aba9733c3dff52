"""`vigil analyze BUNDLE.json` with diagnosis: the analysis report plus `rca`, `runbooks` and
`similar_incidents`, offline. The deterministic RCA is used unless an LLM is configured (`LLM_BASE_URL`)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from vigil.alerts import normalise_severity
from vigil.analysis import bundle as bundle_module
from vigil.analysis.bundle import Bundle, BundleError, load_bundle
from vigil.analysis.classify import default_classifier
from vigil.analysis.report import analyze
from vigil.knowledge.base import KnowledgeBaseError
from vigil.knowledge.models import KnowledgeHit
from vigil.models import AlertRecord, AlertSource, AlertStatus
from vigil.rca.engine import NO_LLM, deterministic_rca, llm_rca
from vigil.rca.llm import LLMError, llm_configured
from vigil.rca.retrieval import IncidentKnowledge
from vigil.settings import Settings


def _read(path: str) -> bytes | str:
    limit = bundle_module.MAX_BUNDLE_BYTES
    if path == "-":
        return sys.stdin.buffer.read(limit + 1)
    size = Path(path).stat().st_size
    if size > limit:
        raise BundleError(f"bundle too large: {size} bytes (limit {limit})")
    return Path(path).read_bytes()


def alert_records(bundle: Bundle) -> list[AlertRecord]:
    """The bundle's alerts as an incident would hold them (what retrieval builds its query from)."""
    records: list[AlertRecord] = []
    for n, alert in enumerate(bundle.alerts):
        starts = alert.starts_at or datetime.now(UTC)
        records.append(
            AlertRecord(
                fingerprint=alert.fingerprint or str(n),
                status=AlertStatus.RESOLVED if alert.status == "resolved" else AlertStatus.FIRING,
                labels=alert.labels,
                annotations=alert.annotations,
                severity=normalise_severity(alert.labels.get("severity")),
                summary=alert.annotations.get("summary", alert.name),
                first_seen=starts,
                last_seen=starts,
                starts_at=starts,
                source=AlertSource.VIGIL,
            )
        )
    return records


def run_analyze_with_rca(path: str, *, knowledge: bool, settings: Settings) -> int:
    try:
        bundle = load_bundle(_read(path))
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = analyze(bundle, classifier=default_classifier())
    runbooks: list[KnowledgeHit] = []
    incidents: list[KnowledgeHit] = []
    if knowledge:
        kb = IncidentKnowledge(settings)
        try:
            runbooks, incidents = kb.retrieve(alert_records(bundle), report)
        except KnowledgeBaseError as exc:
            print(f"note: no runbooks or similar incidents: {exc}", file=sys.stderr)
        finally:
            kb.close()
    configured = llm_configured(settings)
    rca = deterministic_rca(report, runbooks, incidents, llm_error=None if configured else NO_LLM)
    if configured:
        title = bundle.alerts[0].name if bundle.alerts else "offline bundle"
        try:
            rca = asyncio.run(llm_rca(settings, rca, title))
        except LLMError as exc:
            rca = rca.model_copy(update={"llm_error": str(exc)})
    out = report.model_dump(mode="json")
    out["rca"] = rca.model_dump(mode="json", exclude={"runbooks", "similar_incidents", "evidence"})
    out["runbooks"] = [h.model_dump(mode="json") for h in runbooks]
    out["similar_incidents"] = [h.model_dump(mode="json") for h in incidents]
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0
