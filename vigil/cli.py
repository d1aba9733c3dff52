"""The `vigil` command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import typer

from toyprod.cli import chaos_app, toyprod, traffic
from vigil.auth.cli import user_app
from vigil.knowledge.cli import knowledge_app
from vigil.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Vigil: durable, AI-assisted incident response.")
app.add_typer(chaos_app, name="chaos")
app.command("traffic")(traffic)
app.command("toyprod")(toyprod)
app.add_typer(knowledge_app, name="knowledge")
app.add_typer(user_app, name="user")


class WorkerRole(StrEnum):
    INCIDENTS = "incidents"
    ML = "ml"
    INTEGRATIONS = "integrations"


@app.command()
def up() -> None:
    """Start the whole stack on embedded defaults and print where to look. Ctrl-C stops it all."""
    from vigil.stack.up import run_stack

    raise typer.Exit(run_stack(get_settings()))


@app.command()
def worker(role: WorkerRole) -> None:
    """Run one worker process (task queue vigil-<role>)."""
    from workers.main import run_worker

    asyncio.run(run_worker(role.value, get_settings()))


@app.command()
def api() -> None:
    """Run the REST API (alert webhooks, incidents, metrics, health)."""
    from api.server import serve

    serve(get_settings())


@app.command()
def console() -> None:
    """Run the NiceGUI incident console."""
    from ui.console import serve

    serve(get_settings())


@app.command()
def migrate() -> None:
    """Apply the database schema migrations (idempotent)."""
    from vigil.store.database import database_url, migrate_database

    settings = get_settings()
    applied = asyncio.run(migrate_database(database_url(settings)))
    typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@app.command()
def status() -> None:
    """Check that Temporal and every worker answer."""
    from vigil.health import probe_stack

    raise typer.Exit(asyncio.run(probe_stack(get_settings())))


bench = typer.Typer(no_args_is_help=True, help="Benchmarks: ingest (against a running stack), parse (offline).")
app.add_typer(bench, name="bench")


@bench.command("ingest")
def bench_ingest(
    n: int = typer.Option(5000, help="Alerts to send."),
    concurrency: int = typer.Option(32, help="Requests in flight."),
    batch: int = typer.Option(1, help="Alerts per webhook request."),
    fingerprints: int = typer.Option(50, help="Distinct alert fingerprints."),
    groups: int = typer.Option(10, help="Distinct alert groups (incidents)."),
    repeats: int = typer.Option(3, help="Runs; figures are medians."),
    rate: float = typer.Option(0.0, min=0.0, help="Requests per second, open loop (0: closed loop at concurrency)."),
    url: str = typer.Option("", help="API base URL (default: from settings)."),
) -> None:
    """Send N Alertmanager alerts over HTTP; report alerts/s, p50/p99, time to workflow, alerts lost."""
    from benchmarks.ingest import IngestParams, run_cli

    settings = get_settings()
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    params = IngestParams(
        n=n,
        concurrency=concurrency,
        batch=batch,
        fingerprints=fingerprints,
        groups=groups,
        repeats=repeats,
        rate=rate or None,
    )
    raise typer.Exit(run_cli(base_url=base, token=settings.api_token, params=params))


logs = typer.Typer(no_args_is_help=True, help="Log analysis: template mining and session anomalies.")
app.add_typer(logs, name="logs")


class ParseFormat(StrEnum):
    AUTO = "auto"
    MESSAGE = "message"


@logs.command("parse")
def logs_parse(
    file: str = typer.Argument(..., help="Log file to read, or '-' for stdin."),
    fmt: ParseFormat = typer.Option(
        ParseFormat.AUTO,
        "--format",
        help="auto: detect each line's format and mine the event's message; message: each line is a bare message.",
    ),
    state: str | None = typer.Option(None, "--state", help="JSON file to load the miner from and save it to."),
) -> None:
    """Mine templates: one JSON object per input line, {"line", "template_id", "template"}."""
    from vigil.analysis.parse_cli import run_parse

    raise typer.Exit(run_parse(file, message_only=fmt is ParseFormat.MESSAGE, state=state))


@logs.command("sessions")
def logs_sessions(
    train: str = typer.Option(..., "--train", help='JSONL of normal sessions: {"id": ..., "events": [...]} per line.'),
    score: str = typer.Option(..., "--score", help="JSONL of sessions to score (same shape), or '-' for stdin."),
) -> None:
    """Session anomalies: learn from normal sessions, write {"id", "score", "anomalous"} per scored session."""
    from vigil.analysis.sessions import run_sessions

    raise typer.Exit(run_sessions(train, score))


@bench.command("parse")
def bench_parse(
    lines: int = typer.Option(2000, help="Generated lines per corpus system."),
    repeats: int = typer.Option(3, help="Timing runs; figures are medians."),
    seed: int = typer.Option(7, help="Corpus seed."),
) -> None:
    """Template mining: grouping accuracy and lines/s of Vigil's miner vs drain3 on the generated corpus."""
    from benchmarks.parse import main

    raise typer.Exit(main(["--lines", str(lines), "--repeats", str(repeats), "--seed", str(seed)]))


@bench.command("loghub")
def bench_loghub(repeats: int = typer.Option(3, help="Timing runs; speeds are medians.")) -> None:
    """Public Loghub data: template GA vs drain3 on 16 systems, mining speed, HDFS session P/R/F1 vs PCA."""
    from benchmarks.loghub import main

    raise typer.Exit(main(["--repeats", str(repeats)]))


@bench.command("alert-rules")
def bench_alert_rules(
    as_json: bool = typer.Option(False, "--json", help="Every outcome as JSON."),
    misses: bool = typer.Option(False, "--misses", help="List the alerts whose named category was missed."),
) -> None:
    """Published alert rules as alert-only incidents: category accuracy, confidence and ECE vs a majority baseline."""
    from eval.alertcategory.evaluate import main

    raise typer.Exit(main([*(["--json"] if as_json else []), *(["--misses"] if misses else [])]))


@app.command()
def analyze(
    bundles: list[str] = typer.Argument(
        ..., help="Bundle JSON files, folders of them (every *.json inside), or '-' for stdin."
    ),
    knowledge: bool = typer.Option(True, help="Retrieve runbooks and similar incidents from the knowledge base."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Bundles analysed at once, sharing one process."),
) -> None:
    """Analyse incident bundles offline: category, confidence, root cause, evidence, actions, and the RCA with
    runbooks and similar incidents. One bundle: its JSON report on stdout. Several (or a folder): one JSON line
    per bundle, {"bundle", "result"} or {"bundle", "error"}, and bundles/s on stderr."""
    from vigil.rca.offline import bundle_paths, run_analyze_many, run_analyze_with_rca

    settings = get_settings()
    if len(bundle_paths(bundles)) == 1 and not Path(bundles[0]).is_dir():
        raise typer.Exit(run_analyze_with_rca(bundles[0], knowledge=knowledge, settings=settings))
    raise typer.Exit(run_analyze_many(bundles, knowledge=knowledge, settings=settings, jobs=jobs))


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question, in words."),
    k: int = typer.Option(5, min=1, max=20, help="Runbook passages to read."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Answer a question from the runbooks and past incidents, with citations: through the running stack when
    one answers, else offline from the local knowledge base."""
    from vigil.rca.ask import run_ask

    raise typer.Exit(run_ask(question, k=k, as_json=as_json, settings=get_settings()))


model = typer.Typer(no_args_is_help=True, help="The incident classifier.")
app.add_typer(model, name="model")


@model.command("train")
def model_train(
    corpus: str | None = typer.Option(None, "--corpus", help="Labelled JSONL (default: the packaged corpus)."),
    feedback: str | None = typer.Option(None, "--feedback", help="Labelled JSONL of corrections, weighted up."),
    out: str | None = typer.Option(None, "--out", help="Model file to write (default: the packaged model)."),
    feedback_from_store: bool = typer.Option(
        False,
        "--feedback-from-store",
        help="Also learn from the responders' verdicts stored in PostgreSQL (console feedback): each incident's "
        "latest verdict with a right category, weighted as --feedback rows.",
    ),
) -> None:
    """Train the classifier; prints held-out accuracy and calibration error (ECE)."""
    from vigil.analysis.classify import run_train

    stored: list[dict[str, object]] = []
    if feedback_from_store:
        from vigil.feedback_training import load_examples

        examples = load_examples(get_settings())
        if isinstance(examples, str):
            typer.echo(f"error: {examples}", err=True)
            raise typer.Exit(1)
        stored = examples
    raise typer.Exit(run_train(corpus, feedback, out, stored_feedback=stored))


feedback_app = typer.Typer(no_args_is_help=True, help="Responders' feedback on diagnoses.")
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    out: Path | None = typer.Option(None, "--out", help="JSONL file to write (default: stdout)."),
) -> None:
    """The stored feedback as labelled examples in the `vigil model train --feedback` JSONL format."""
    from vigil.feedback_training import run_export

    raise typer.Exit(run_export(get_settings(), out))


@bench.command("analyze")
def bench_analyze(
    lines: int = typer.Option(100_000, help="Log lines in the generated bundle."),
    repeats: int = typer.Option(3, help="Timing runs; figures are medians."),
    seed: int = typer.Option(5, help="Bundle seed."),
) -> None:
    """End-to-end analysis time of a generated bundle vs drain3 template mining of the same lines."""
    from benchmarks.analyze import main

    raise typer.Exit(main(["--lines", str(lines), "--repeats", str(repeats), "--seed", str(seed)]))


@bench.command("console")
def bench_console(
    incidents: int = typer.Option(1000, help="Incidents seeded into a throwaway store."),
    page: int = typer.Option(500, help="Rows of one list page."),
    repeats: int = typer.Option(7, help="Timing runs; figures are medians."),
) -> None:
    """The console's incident list: query and row shaping for a page of hundreds vs plain incident rows."""
    from benchmarks.console import main

    raise typer.Exit(main(["--incidents", str(incidents), "--page", str(page), "--repeats", str(repeats)]))


@bench.command("insights")
def bench_insights(
    incidents: int = typer.Option(2000, help="Incidents seeded into a throwaway store."),
    repeats: int = typer.Option(7, help="Timing runs; figures are medians."),
) -> None:
    """The console's Insights reports (grouped SQL) on N incidents vs grouping the raw rows in Python."""
    from benchmarks.insights import main

    raise typer.Exit(main(["--incidents", str(incidents), "--repeats", str(repeats)]))


@bench.command("console-paint")
def bench_console_paint(
    incidents: int = typer.Option(1000, help="Incidents seeded into a throwaway store for the timed list."),
    baseline: int = typer.Option(10, help="Incidents of the baseline list, loaded first in the same run."),
    repeats: int = typer.Option(5, help="Timed page loads of each list; figures are medians."),
) -> None:
    """The console list's time to first paint in headless chromium, 1,000 incidents vs a baseline of 10."""
    from benchmarks.console_paint import main

    raise typer.Exit(main(["--incidents", str(incidents), "--baseline", str(baseline), "--repeats", str(repeats)]))


@bench.command("retrieval")
def bench_retrieval(
    sizes: str = typer.Option("1000,50000", help="Comma-separated collection sizes (chunks), Qdrant Edge."),
    baseline_sizes: str = typer.Option(
        "1000,10000", help="Comma-separated sizes for the qdrant-client local-mode baseline ('' for none)."
    ),
    queries: int = typer.Option(50, help="Timed queries per run."),
    queries_large: int = typer.Option(10, help="Timed queries per run, local mode above 5,000 chunks (slow)."),
    repeats: int = typer.Option(3, help="Timing runs; figures are medians."),
) -> None:
    """Knowledge-base retrieval: hybrid query latency p50/p95 at each size, Qdrant Edge vs qdrant-client local
    mode, and embedding throughput."""
    from benchmarks.retrieval import main

    argv = ["--sizes", sizes, "--baseline-sizes", baseline_sizes, "--queries", str(queries)]
    raise typer.Exit(main([*argv, "--queries-large", str(queries_large), "--repeats", str(repeats)]))


@bench.command("integrations")
def bench_integrations(
    repeats: int = typer.Option(5, min=1, help="Runs; figures are medians."),
    concurrency: int = typer.Option(20, min=1, help="Incidents whose Approve buttons are pressed at once."),
    out: Path | None = typer.Option(None, "--out", help="JSON report with every sample."),
) -> None:
    """Slack integration latencies on a private stack (from a source checkout; Slack is the tests' fake):
    diagnosis → Slack message vs the store, button press → workflow state vs the REST approval, and N
    concurrent presses (answers within Slack's 3 s) vs N concurrent GET /healthz."""
    from benchmarks.integrations import IntegrationsParams, run_cli

    raise typer.Exit(run_cli(IntegrationsParams(repeats=repeats, concurrency=concurrency), out))


evaluate = typer.Typer(no_args_is_help=True, help="Evaluations: faults, remediation, chaos (toyprod faults).")
app.add_typer(evaluate, name="eval")


@evaluate.command("faults")
def eval_faults(
    groups: int = typer.Option(10, min=1, help="Alert groups (incidents)."),
    alerts: int = typer.Option(10, min=1, help="Alerts per group."),
    concurrency: int = typer.Option(8, min=1, help="Requests in flight."),
    seed: int = typer.Option(7, help="Order of the deliveries."),
) -> None:
    """An alert storm with duplicate and out-of-order deliveries while the incidents worker, Temporal and
    PostgreSQL are SIGKILLed and restarted, on a private stack; counts sent / accepted / present / lost /
    duplicated. Exits 1 unless nothing was lost, duplicated or misplaced."""
    from eval.faults import FaultParams, main

    raise typer.Exit(main(FaultParams(groups=groups, alerts_per_group=alerts, concurrency=concurrency, seed=seed)))


@dataclass(frozen=True)
class _StackTarget:
    api: str
    toyprod: str
    faults: list[str]
    api_token: str | None
    chaos_token: str | None


def _stack_target(api: str, toyprod_url: str, faults: str, parse: Callable[[str], list[str]]) -> _StackTarget:
    """The running stack an evaluation drives: its URLs (defaults from the settings), the faults asked for (exit 2
    naming the unknown ones) and the API and chaos tokens."""
    from toyprod.config import resolve_chaos_token

    settings = get_settings()
    try:
        names = parse(faults)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    chaos = settings.chaos_token.get_secret_value() if settings.chaos_token else None
    return _StackTarget(
        api=api or f"http://{settings.api_host}:{settings.api_port}",
        toyprod=toyprod_url or f"http://127.0.0.1:{settings.toyprod_port}",
        faults=names,
        api_token=settings.api_token.get_secret_value() if settings.api_token else None,
        chaos_token=resolve_chaos_token(chaos, settings.state_dir),
    )


@evaluate.command("remediation")
def eval_remediation(
    api: str = typer.Option("", "--api", help="Vigil API base URL (default: http://VIGIL_API_HOST:VIGIL_API_PORT)."),
    toyprod_url: str = typer.Option("", "--toyprod", help="toyprod base URL (default: 127.0.0.1:VIGIL_TOYPROD_PORT)."),
    faults: str = typer.Option(
        "",
        "--faults",
        help="Comma-separated toyprod faults (default: all eight with an action: bad-deploy, memory-leak, cpu-burn, "
        "db-pool-exhaustion, payments-failing, payments-ratelimit, disk-fill, cert-expiry).",
    ),
    repeats: int = typer.Option(3, min=1, help="Runs of each fault; the table shows medians."),
    approve: bool = typer.Option(
        True, "--approve/--no-approve", help="Approve each incident's first pending proposal at once (bench-oncall)."
    ),
    timeout: float = typer.Option(600.0, min=1, help="Seconds per run (also the wait for a settled stack)."),
    wait_closed: bool = typer.Option(
        False,
        "--wait-closed",
        help="Before each run, wait until every toyprod incident is closed, not just resolved (a fault repeated "
        "before its incident closes re-opens it); for a stack with a short VIGIL_CLOSE_AFTER_SECONDS.",
    ),
    out: Path | None = typer.Option(Path("remediation-report.json"), "--out", help="JSON report with every run."),
) -> None:
    """Against a running stack: each toyprod fault with a catalogue action, chaos -> resolved, split into
    detection, diagnosis, proposal, approval wait, action, verification and resolution (medians of the repeats).
    Exits 1 unless every run resolved through a verified run of the expected action."""
    from eval.remediation import RemediationParams, main, parse_faults

    target = _stack_target(api, toyprod_url, faults, parse_faults)
    params = RemediationParams(
        api=target.api,
        toyprod=target.toyprod,
        faults=target.faults,
        repeats=repeats,
        approve=approve,
        timeout=timeout,
        wait_closed=wait_closed,
        out=out,
    )
    raise typer.Exit(main(params, api_token=target.api_token, chaos_token=target.chaos_token))


@evaluate.command("chaos")
def eval_chaos(
    api: str = typer.Option("", "--api", help="Vigil API base URL (default: http://VIGIL_API_HOST:VIGIL_API_PORT)."),
    toyprod_url: str = typer.Option("", "--toyprod", help="toyprod base URL (default: 127.0.0.1:VIGIL_TOYPROD_PORT)."),
    faults: str = typer.Option("", "--faults", help="Comma-separated toyprod faults, in order (default: all eleven)."),
    incident_timeout: float = typer.Option(900.0, min=1, help="Seconds from a fault to its first incident."),
    diagnosis_timeout: float = typer.Option(600.0, min=1, help="Seconds from the incident to its diagnosis."),
    clear_timeout: float = typer.Option(900.0, min=1, help="Seconds from the reset to its alerts resolved."),
    settle_timeout: float = typer.Option(900.0, min=1, help="Seconds to wait for no open toyprod incident."),
    out: Path | None = typer.Option(Path("chaos-report.json"), "--out", help="JSON report, rewritten per fault."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of the table."),
) -> None:
    """Against a running stack: every toyprod fault in turn at its defaults, through Prometheus and Alertmanager,
    reset between faults: alerts, time to incident and to diagnosis, category (and the expected one), component,
    confidence, and whether the alerts cleared after the reset. Exits 1 unless all are right and cleared."""
    from eval.chaos import ChaosParams, main, parse_faults

    target = _stack_target(api, toyprod_url, faults, parse_faults)
    params = ChaosParams(
        api=target.api,
        toyprod=target.toyprod,
        faults=target.faults,
        incident_timeout=incident_timeout,
        diagnosis_timeout=diagnosis_timeout,
        clear_timeout=clear_timeout,
        settle_timeout=settle_timeout,
        out=out,
    )
    code = main(params, api_token=target.api_token, chaos_token=target.chaos_token, as_json=as_json)
    raise typer.Exit(code)


@app.command()
def postmortem(
    incident_id: str = typer.Argument(..., help="Incident id (an occurrence id, or a group id for its latest)."),
    out: Path | None = typer.Option(None, "--out", help="Write the Markdown to this file instead of stdout."),
) -> None:
    """Print (or write) the postmortem draft of an incident, fetched from the running API."""
    from urllib.parse import quote

    import httpx

    settings = get_settings()
    base = f"http://{settings.api_host}:{settings.api_port}"
    token = settings.api_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}
    try:
        response = httpx.get(f"{base}/api/v1/incidents/{quote(incident_id, safe='')}/postmortem", headers=headers)
    except httpx.TransportError as exc:
        typer.echo(f"error: the Vigil API does not answer at {base} ({exc}); start it with `vigil up`", err=True)
        raise typer.Exit(1) from exc
    if response.status_code != 200:
        typer.echo(f"error: {response.status_code} from {base}: {response.text[:500]}", err=True)
        raise typer.Exit(1)
    if out is None:
        typer.echo(response.text, nl=False)
        return
    out.write_text(response.text, encoding="utf-8")
    typer.echo(f"wrote {out}")


actions = typer.Typer(no_args_is_help=True, help="Remediation actions: the catalogue and the policy.")
app.add_typer(actions, name="actions")


@actions.command("list")
def actions_list() -> None:
    """The configured catalogue (shipped actions and VIGIL_ACTIONS_DIRS): one row per action."""
    from rich.console import Console

    from vigil.remediation.catalogue import load_configured_catalogue
    from vigil.remediation.cli import actions_table
    from vigil.remediation.errors import RemediationConfigError

    try:
        catalogue = load_configured_catalogue(get_settings())
    except RemediationConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    Console().print(actions_table(catalogue))


@actions.command("validate")
def actions_validate(
    paths: list[Path] = typer.Argument(None, help="Action files or folders (default: the configured catalogue)."),
    policy: Path | None = typer.Option(None, "--policy", help="Policy file (default: the configured one)."),
) -> None:
    """Check action files and the policy; every problem is listed (exit 1), else the counts (exit 0)."""
    from vigil.remediation.cli import validate

    raise typer.Exit(validate(paths or None, policy, get_settings()))


slack = typer.Typer(no_args_is_help=True, help="The Slack app.")
app.add_typer(slack, name="slack")


@slack.command("manifest")
def slack_manifest(
    url: str = typer.Option(
        "", "--url", help="Public base URL of the Vigil API (default: http://VIGIL_API_HOST:VIGIL_API_PORT)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
    socket_mode: bool = typer.Option(False, "--socket-mode", help="Events over Socket Mode: no request URLs."),
) -> None:
    """Print the Slack app manifest (Create New App → From a manifest). Slack calls only public HTTPS URLs: give
    --url, or use --socket-mode with VIGIL_SLACK_APP_TOKEN."""
    import json

    import yaml

    from vigil.integrations.slack.manifest import slack_manifest as build

    settings = get_settings()
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    try:
        manifest = build(base, socket_mode=socket_mode)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not socket_mode and not base.startswith("https://"):
        typer.echo(
            f"note: Slack calls only public HTTPS URLs, and {base} is not one: pass --url https://<public host> "
            "(a tunnel or proxy to the API), or --socket-mode.",
            err=True,
        )
    typer.echo(json.dumps(manifest, indent=2) if as_json else yaml.safe_dump(manifest, sort_keys=False), nl=as_json)
