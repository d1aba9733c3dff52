"""`vigil analyze` and the `analyze_bundle` activity on a toyprod-like database outage."""

from __future__ import annotations

import json
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from vigil.analysis import bundle as bundle_module
from vigil.analysis.bundle import Bundle
from vigil.analysis.report import AnalysisReport
from vigil.cli import app
from vigil.settings import ML_TASK_QUEUE, Settings
from workers.main import build_worker

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
    assert report["root_cause"]["component"] == "toyprod/database"
    assert report["severity"] == "critical"
    assert report["code_related"] is False
    assert 0 < report["confidence"] <= 1
    ids = {e["id"] for e in report["evidence"]}
    assert "detector:db-connection-refused" in ids
    assert any(i.startswith("error:") for i in ids)
    assert any(i.startswith("log:tpl-") for i in ids)
    assert "deploy:abc1234" in ids
    assert "metric:toyprod_dependency_up{dependency=database}" in ids
    assert report["recommended_actions"]
    for action in report["recommended_actions"]:
        assert action["evidence"]
        assert set(action["evidence"]) <= ids
    assert report["timeline"]


def test_analyze_cli(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(toyprod_bundle()))
    result = CliRunner().invoke(app, ["analyze", str(path)])
    assert result.exit_code == 0, result.output
    check_report(json.loads(result.stdout))


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


async def test_analyze_bundle_activity(temporal_client: Client) -> None:
    queue = f"test-analyze-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        ml = await build_worker("ml", temporal_client, stack, Settings())
        await stack.enter_async_context(ml)
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
