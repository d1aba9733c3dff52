"""`vigil analyze BUNDLE...` with diagnosis: the analysis report plus `rca`, `runbooks` and `similar_incidents`,
offline. The deterministic RCA is used unless an LLM is configured (`LLM_BASE_URL`).

One bundle prints its report as indented JSON, and the root cause with its chain as one line on stderr. Several
(files, or folders meaning every `*.json` in them) are analysed in this one process by `jobs` threads sharing one
knowledge base and one embedding model, so the model's seconds of loading are paid once, not per bundle; each
bundle gives one JSON line, in the order given, and the rate goes to stderr. The knowledge base opens, and the
model loads, only when retrieval first runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def _load(path: str) -> Bundle:
    """The bundle at `path`; a bundle that cannot be read or parsed raises BundleError with the reason."""
    try:
        return load_bundle(_read(path))
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None


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


def diagnose(bundle: Bundle, knowledge: IncidentKnowledge | None, settings: Settings) -> dict[str, Any]:
    """The report of one bundle with its RCA, runbooks and similar incidents (none without `knowledge`)."""
    report = analyze(bundle, classifier=default_classifier())
    runbooks: list[KnowledgeHit] = []
    incidents: list[KnowledgeHit] = []
    if knowledge is not None:
        try:
            runbooks, incidents = knowledge.retrieve(alert_records(bundle), report)
        except KnowledgeBaseError as exc:
            print(f"note: no runbooks or similar incidents: {exc}", file=sys.stderr)
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
    return out


def run_analyze_with_rca(path: str, *, knowledge: bool, settings: Settings) -> int:
    """One bundle: its report as indented JSON; exit 2 when it cannot be read or parsed."""
    try:
        bundle = _load(path)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kb = IncidentKnowledge(settings) if knowledge else None
    try:
        out = diagnose(bundle, kb, settings)
    finally:
        if kb is not None:
            kb.close()
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    print(root_cause_line(out), file=sys.stderr)
    return 0


def root_cause_line(result: dict[str, Any]) -> str:
    """One line for a person reading the terminal: the component at fault and the chain that leads to it."""
    rc = result.get("rca", {}).get("root_cause") or result.get("root_cause") or {}
    line = f"root cause: {rc.get('component', 'unknown')} ({result.get('category')})"
    chain = rc.get("chain") or []
    if chain:
        hops = " -> ".join(f"{h['component']} [{', '.join(h['evidence'][:2])}]" for h in chain)
        line += f"; chain: {hops}"
    return line


def bundle_paths(paths: Sequence[str]) -> list[str]:
    """Files as given, folders as their `*.json` files (sorted), each once."""
    found: dict[str, None] = {}
    for path in paths:
        if path != "-" and Path(path).is_dir():
            found.update((str(p), None) for p in sorted(Path(path).glob("*.json")) if p.is_file())
        else:
            found[path] = None
    return list(found)


def _analyze_file(path: str, knowledge: IncidentKnowledge | None, settings: Settings) -> dict[str, Any]:
    try:
        return {"bundle": path, "result": diagnose(_load(path), knowledge, settings)}
    except BundleError as exc:
        return {"bundle": path, "error": str(exc)}


def run_analyze_many(paths: Sequence[str], *, knowledge: bool, settings: Settings, jobs: int) -> int:
    """Several bundles in this process: one JSON line each, `{"bundle", "result"}` or `{"bundle", "error"}`, in
    the order given; bundles/s on stderr; exit 2 when any bundle failed, 0 otherwise."""
    files = bundle_paths(paths)
    if not files:
        print(f"error: no *.json bundles in {', '.join(paths)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    kb = IncidentKnowledge(settings) if knowledge else None
    if kb is not None:
        try:  # opened once here, so that a knowledge base that cannot open is said once, not once per bundle
            kb.base()
        except KnowledgeBaseError as exc:
            print(f"note: no runbooks or similar incidents: {exc}", file=sys.stderr)
            kb = None
    failed = 0
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="analyze") as pool:
            for result in pool.map(lambda path: _analyze_file(path, kb, settings), files):
                failed += "error" in result
                sys.stdout.write(json.dumps(result) + "\n")
                sys.stdout.flush()
    finally:
        if kb is not None:
            kb.close()
    elapsed = time.perf_counter() - start
    print(
        f"analysed {len(files)} bundle(s) in {elapsed:.2f} s with {jobs} job(s): {len(files) / elapsed:.2f} "
        f"bundles/s; {failed} failed",
        file=sys.stderr,
    )
    return 2 if failed else 0
