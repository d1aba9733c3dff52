"""`vigil analyze` and the `analyze_bundle` activity on a toyprod-like database outage."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from vigil.analysis import bundle as bundle_module
from vigil.analysis.bundle import Bundle, parse_bundle
from vigil.analysis.report import AnalysisReport, analyze
from vigil.cli import app
from vigil.settings import ML_TASK_QUEUE

# CLI runs get a private state dir (their Qdrant) and the small fixture runbooks.
pytestmark = pytest.mark.usefixtures("cli_state")

TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/app/toyprod/dependencies.py", line 71, in _connection\n    self._connect()\n'
    '  File "/app/toyprod/dependencies.py", line 81, in _connect\n    raise DatabaseError(\n'
    'toyprod.errors.DatabaseError: connection to server at "db.toyprod.internal" (10.0.3.7), port 5432 failed: '
    "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
)


def toyprod_bundle() -> dict[str, Any]:
    logs = []
    for i in range(30):
        ts = f"2026-03-01T10:{i:02d}:05.000Z"
        if i < 12:
            record = {
                "ts": ts,
                "level": "INFO",
                "service": "toyprod",
                "logger": "toyprod.http",
                "message": f"GET /api/products 200 {i + 3}ms",
            }
        else:
            record = {
                "ts": ts,
                "level": "ERROR",
                "service": "toyprod",
                "logger": "toyprod.db",
                "message": f"GET /api/products failed\n{TRACE}",
                "route": "/api/products",
            }
        logs.append({"ts": ts, "service": "toyprod", "line": json.dumps(record)})
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "ToyprodDependencyDown",
                "service": "toyprod",
                "dependency": "database",
                "severity": "critical",
            },
            "annotations": {"summary": "toyprod cannot reach its database"},
            "startsAt": "2026-03-01T10:13:00Z",
        }
    ]
    deploys = [{"ts": "2026-03-01T08:00:00Z", "service": "toyprod", "version": "v1.4.0", "commit": "abc1234"}]
    metrics = [
        {
            "name": "toyprod_dependency_up",
            "labels": {"dependency": "database"},
            "points": [[1, 1], [2, 1], [3, 0], [4, 0]],
        }
    ]
    return {"alerts": alerts, "logs": logs, "deploys": deploys, "metrics": metrics}


def check_report(report: dict[str, Any]) -> None:
    assert report["category"] == "database"
    # The alert fires on toyprod; its errors name the database host: that is the component at fault.
    assert report["root_cause"]["component"] == "db.toyprod.internal/database"
    chain = report["root_cause"]["chain"]
    assert [hop["component"] for hop in chain] == ["toyprod", "db.toyprod.internal"]
    assert report["suspects"][0]["component"] == "db.toyprod.internal"
    assert report["suspects"][0]["reporters"] == ["toyprod"]
    assert report["severity"] == "critical"
    assert report["code_related"] is False
    assert 0 < report["confidence"] <= 1
    ids = {e["id"] for e in report["evidence"]}
    assert "detector:db-connection-refused" in ids
    assert any(i.startswith("error:") for i in ids)
    assert any(i.startswith("log:tpl-") for i in ids)
    assert "deploy:abc1234" in ids
    assert "metric:toyprod_dependency_up{dependency=database}" in ids
    anomalies = [e for e in report["evidence"] if e["id"].startswith("anomaly:tpl-")]
    assert anomalies
    assert anomalies[0]["data"]["anomaly"] == "new"
    assert anomalies[0]["data"]["baseline_count"] == 0
    assert report["recommended_actions"]
    for action in report["recommended_actions"]:
        assert action["evidence"]
        assert set(action["evidence"]) <= ids
    for hop in chain:
        assert hop["evidence"]
        assert set(hop["evidence"]) <= ids
    assert "relation:toyprod->db.toyprod.internal" in chain[-1]["evidence"]
    assert report["timeline"]


T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
STEP = 15


def _series(name: str, labels: dict[str, str], values: list[float]) -> dict[str, Any]:
    return {"name": name, "labels": labels, "points": [[T0.timestamp() + i * STEP, v] for i, v in enumerate(values)]}


def toyprod_metrics(pool_at: int, errors_at: int, n: int = 160) -> list[dict[str, Any]]:
    """toyprod's pool saturates (3 of 20 in use → 20) at point `pool_at`; its 500s rate jumps at `errors_at`."""
    rng = random.Random(7)
    pool = [max(0.0, round(rng.gauss(4, 1))) if i < pool_at else 20.0 for i in range(n)]
    errors = [abs(rng.gauss(0, 0.05)) + (4.0 if i >= errors_at else 0.0) for i in range(n)]
    quiet = [rng.gauss(120, 4) for i in range(n)]
    return [
        _series("toyprod_http_requests_total:rate1m", {"status": "500", "service": "toyprod"}, errors),
        _series("toyprod_http_requests_total:rate1m", {"status": "200", "service": "toyprod"}, quiet),
        _series("toyprod_db_pool_in_use", {"service": "toyprod"}, pool),
    ]


def test_metrics_only_bundle_onset_and_first_mover() -> None:
    report = analyze(parse_bundle({"metrics": toyprod_metrics(pool_at=60, errors_at=68)}))
    pool_id = "metric:toyprod_db_pool_in_use{service=toyprod}"
    errors_id = "metric:toyprod_http_requests_total:rate1m{service=toyprod,status=500}"
    assert report.first_movers == [pool_id, errors_id]  # the steady 200s did not move
    assert report.onset_source == "metrics"
    assert report.onset is not None
    assert abs((report.onset - (T0 + timedelta(seconds=60 * STEP))).total_seconds()) <= 2 * STEP
    by_id = {e.id: e for e in report.evidence}
    pool = by_id[pool_id]
    assert pool.data["first_mover_rank"] == 0
    assert pool.data["change_points"][0]["direction"] == "up"
    assert pool.data["change_points"][0]["after"] == pytest.approx(20.0)
    assert by_id[errors_id].data["first_mover_rank"] == 1
    assert by_id["metric:toyprod_http_requests_total:rate1m{service=toyprod,status=200}"].data["changed"] is False
    finding = next(f for f in report.findings if f.id == "detector:metric-database")
    assert finding.evidence == [pool_id]
    assert report.category.value == "database"


def test_log_onset_wins_over_metrics_and_anomalies_cite_templates() -> None:
    bundle = toyprod_bundle()
    bundle["metrics"] = toyprod_metrics(pool_at=40, errors_at=48)  # 10:10, before the first error at 10:12:05
    report = analyze(parse_bundle(bundle))
    assert report.onset_source == "logs"
    assert report.onset == datetime(2026, 3, 1, 10, 12, 5, tzinfo=UTC)
    assert report.first_movers[0] == "metric:toyprod_db_pool_in_use{service=toyprod}"
    anomaly = next(e for e in report.evidence if e.kind == "log-anomaly")
    assert anomaly.id.startswith("anomaly:tpl-t")
    assert anomaly.count == 18
    assert anomaly.first_seen == report.onset


def test_analyze_cli(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(toyprod_bundle()))
    result = CliRunner().invoke(app, ["analyze", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    check_report(report)
    # the deterministic RCA, with the runbooks retrieval found and (none yet) similar incidents
    ids = {e["id"] for e in report["evidence"]}
    assert report["rca"]["source"] == "deterministic"
    assert set(report["rca"]["root_cause"]["evidence"]) <= ids | {f"runbook:{n}" for n in range(1, 4)}
    assert report["runbooks"]
    assert {"source", "title", "score", "text"} <= set(report["runbooks"][0])
    assert report["similar_incidents"] == []
    assert any(a.get("runbook") for a in report["rca"]["recommended_actions"])
    without = CliRunner().invoke(app, ["analyze", str(path), "--no-knowledge"])
    assert without.exit_code == 0, without.output
    assert json.loads(without.stdout)["runbooks"] == []


def test_analyze_bad_bundles(tmp_path: Path) -> None:
    cases = {
        "malformed.json": ("{not json", "malformed JSON"),
        "list.json": ("[1, 2]", "JSON object"),
        "types.json": ('{"logs": [{"line": 5}]}', "logs.0.line"),
        "deploy.json": ('{"deploys": [{"service": "x"}]}', "deploys.0.ts"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = CliRunner().invoke(app, ["analyze", str(path)])
        assert result.exit_code == 2, (name, result.output)
        assert message in result.output
        assert "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["analyze", str(tmp_path / "missing.json")])
    assert missing.exit_code == 2
    assert "cannot read" in missing.output


def test_analyze_huge_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", 1000)
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(toyprod_bundle()))
    result = CliRunner().invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2
    assert "too large" in result.output
    piped = CliRunner().invoke(app, ["analyze", "-"], input=json.dumps(toyprod_bundle()))
    assert piped.exit_code == 2
    assert "too large" in piped.output


def test_analyze_empty_bundle() -> None:
    result = CliRunner().invoke(app, ["analyze", "-"], input="{}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["evidence"] == []


def test_analyze_many_bundles_in_one_process(tmp_path: Path) -> None:
    """A folder means its *.json bundles (sorted); each gives one JSON line in order, a bad one an error line
    without stopping the others; the rate goes to stderr and the exit code says something failed."""
    folder = tmp_path / "bundles"
    folder.mkdir()
    outage = toyprod_bundle()
    (folder / "a-outage.json").write_text(json.dumps(outage))
    (folder / "b-broken.json").write_text("{not json")
    (folder / "c-empty.json").write_text("{}")
    (folder / "notes.txt").write_text("not a bundle")
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(outage))
    result = CliRunner().invoke(app, ["analyze", str(folder), str(extra), "--jobs", "2"])
    assert result.exit_code == 2, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["bundle"]).name for line in lines] == [
        "a-outage.json",
        "b-broken.json",
        "c-empty.json",
        "extra.json",
    ]
    check_report(lines[0]["result"])
    assert lines[0]["result"]["runbooks"]
    assert lines[0]["result"]["rca"]["source"] == "deterministic"
    assert "malformed JSON" in lines[1]["error"]
    assert "result" not in lines[1]
    assert lines[2]["result"]["evidence"] == []
    assert lines[3]["result"] == lines[0]["result"]
    assert "analysed 4 bundle(s)" in result.stderr
    assert "bundles/s; 1 failed" in result.stderr

    (folder / "b-broken.json").unlink()
    good = CliRunner().invoke(app, ["analyze", str(folder), "--no-knowledge"])
    assert good.exit_code == 0, good.output
    assert [json.loads(line)["result"]["runbooks"] for line in good.stdout.splitlines()] == [[], []]
    empty = CliRunner().invoke(app, ["analyze", str(tmp_path / "nothing-here"), str(tmp_path / "nor-here")])
    assert empty.exit_code == 2
    assert "cannot read" in empty.stdout


def test_analyze_without_knowledge_loads_no_model_or_engine(tmp_path: Path) -> None:
    """`--no-knowledge` never imports torch, sentence-transformers, a Qdrant engine or the OpenAI client; with
    knowledge, the model is imported only once retrieval runs (this is what made every bundle cost ~10 s)."""
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(toyprod_bundle()))
    script = (
        "import sys\n"
        "from vigil.cli import app\n"
        "try:\n"
        f'    app(["analyze", {str(path)!r}, "--no-knowledge"])\n'
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = ['torch', 'sentence_transformers', 'qdrant_edge', 'qdrant_client', 'openai']\n"
        "print('LOADED', [name for name in heavy if name in sys.modules], file=sys.stderr)\n"
    )
    env = {**os.environ, "VIGIL_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["category"] == "database"
    assert "LOADED []" in done.stderr


@workflow.defn(sandboxed=False)
class AnalyzeOnce:
    @workflow.run
    async def run(self, bundle: Bundle) -> AnalysisReport:
        report: AnalysisReport = await workflow.execute_activity(
            "analyze_bundle",
            bundle,
            task_queue=ML_TASK_QUEUE,
            result_type=AnalysisReport,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=30),
        )
        return report


async def test_analyze_bundle_activity(temporal_client: Client, workers: list[Worker]) -> None:
    """The session's ml worker (built by the production code) runs the activity."""
    queue = f"test-analyze-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        tester = Worker(
            temporal_client, task_queue=queue, workflows=[AnalyzeOnce], workflow_runner=UnsandboxedWorkflowRunner()
        )
        await stack.enter_async_context(tester)
        report = await temporal_client.execute_workflow(
            AnalyzeOnce.run,
            Bundle.model_validate(toyprod_bundle()),
            id=f"analyze-{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=90),
        )
    check_report(report.model_dump(mode="json"))


def test_deploys_sharing_a_version_get_distinct_evidence_ids() -> None:
    """Two services shipping the same version are two suspects: each citation must name one deploy."""
    data = toyprod_bundle()
    data["deploys"] = [
        {"ts": "2026-03-01T10:05:00Z", "service": "toyprod", "version": "1.4.2"},
        {"ts": "2026-03-01T10:06:00Z", "service": "payments", "version": "1.4.2"},
        {"ts": "2026-03-01T10:07:00Z", "service": "payments", "version": "1.4.2"},
    ]
    report = analyze(parse_bundle(data))
    deploy_ids = [e.id for e in report.evidence if e.kind == "deploy"]
    assert sorted(deploy_ids) == ["deploy:1.4.2@payments", "deploy:1.4.2@payments#2", "deploy:1.4.2@toyprod"]
    timeline_ids = {t.evidence_id for t in report.timeline if t.kind == "deploy"}
    assert timeline_ids == set(deploy_ids)


def test_severity_is_the_alerts_own_not_a_log_detectors() -> None:
    """A warning-only incident stays a warning however loud its logs (the database-down detector says critical);
    with no alert the detectors decide."""
    bundle = toyprod_bundle()
    bundle["alerts"][0]["labels"]["severity"] = "warning"
    warned = analyze(parse_bundle(bundle))
    assert any(f.severity == "critical" for f in warned.findings)
    assert warned.severity == "warning"
    bundle["alerts"] = []
    assert analyze(parse_bundle(bundle)).severity == "critical"
