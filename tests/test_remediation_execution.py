"""Carrying out remediation actions on real components: toyprod's admin API served by uvicorn on 127.0.0.1, scripts
in a temporary allowlisted folder, runs recorded in the session's PostgreSQL, the activities run in Temporal's
ActivityEnvironment (heartbeats and a real metric buffer), and a local HTTP server speaking Prometheus's query API.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.remediation import RUNS_METRIC, RemediationActivities
from tests.support import eventually, free_port
from tests.test_toyprod import TOKEN, base_config
from toyprod import VERSION
from toyprod.app import create_app
from vigil.models import Severity
from vigil.remediation.catalogue import (
    SHIPPED_ACTIONS,
    Catalogue,
    configured_action_paths,
    load_catalogue,
    load_configured_catalogue,
)
from vigil.remediation.errors import RemediationConfigError
from vigil.remediation.execution import REDACTED, redact
from vigil.remediation.models import (
    MAX_OUTPUT_CHARS,
    ActionOutcome,
    ActionResult,
    MeasureInput,
    PlanInput,
    RunActionInput,
)
from vigil.remediation.planning import plan
from vigil.remediation.policy import SHIPPED_POLICY, Policy, load_policy
from vigil.remediation.verification import measure, verification_spec
from vigil.settings import Settings
from vigil.store.database import Store
from workers.main import build_worker

AUTH = {"Authorization": f"Bearer {TOKEN}"}
API_SECRET = "api-secret-value-7f3a"
STATIC_HEADER = "static-header-value-91c2"
LABELS = {"service": "toyprod", "namespace": "demo", "target": "world"}

SCRIPTS = {
    "hello.sh": f'echo "hello $1"\necho "leak: {API_SECRET}"\necho "to stderr" >&2\nenv\n',
    "fail.sh": 'echo "disk is read-only" >&2\nexit 3\n',
    "slow.sh": "sleep 300 &\necho $! > child.pid\nwait\n",
    "append.sh": "echo $$ > append.pid\necho run >> runs.log\n"
    'while [ ! -f release ]; do sleep 0.02; done\necho "appended"\n',
    "beat.sh": 'while [ ! -f beat ]; do sleep 0.02; done\necho "saw a heartbeat"\n',
}


def script_action(name: str, path: str, *, idempotent: bool = True, timeout: float = 20) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"Test action {name}.",
        "parameters": {"target": {"type": "string", "from": "alert.labels.target", "pattern": "^[a-z]+$"}},
        "executor": {"type": "script", "path": path, "args": ["{target}"]},
        "timeout_seconds": timeout,
        "idempotent": idempotent,
        "verification": {"alerts_resolved": True, "within_seconds": 60},
    }


def echo_action(port: int) -> dict[str, Any]:
    return {
        "name": "echo-request",
        "description": "POST to a server that answers 500 with the request it got.",
        "parameters": {
            "target": {"type": "string", "from": "alert.labels.target", "pattern": "^[a-z ./]+$"},
            "size": {"type": "integer", "from": "alert.labels.size", "default": 5, "minimum": 1, "maximum": 9},
        },
        "executor": {
            "type": "http",
            "url": f"http://127.0.0.1:{port}/items/{{target}}",
            "headers": {"Authorization": "Bearer ${CHAOS_TOKEN}", "X-Static": STATIC_HEADER},
            "body": {"size": "{size}", "note": "size {size}", "url": "${TOYPROD_URL}"},
        },
        "timeout_seconds": 10,
        "idempotent": True,
        "verification": {"promql": 'up{target="{target}"}', "condition": "== 1", "for_seconds": 10},
    }


class Stub:
    """127.0.0.1 HTTP server: POST answers 500 with the request it got (path, headers, JSON body); GET
    /api/v1/query answers Prometheus's JSON from `answers` by query text (unknown: an empty vector)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.queries: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                echo = {"path": self.path, "headers": dict(self.headers.items()), "body": json.loads(body or b"null")}
                self._answer(500, echo)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query).get("query", [""])[0]
                stub.queries.append(query)
                empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
                self._answer(*stub.answers.get(query, (200, empty)))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def vector(self, query: str, *values: float | str) -> None:
        result = [{"metric": {"i": str(i)}, "value": [1.0, str(v)]} for i, v in enumerate(values)]
        self.answers[query] = (200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Toyprod:
    port: int
    lines: list[str]

    async def admin(self) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(f"http://127.0.0.1:{self.port}/admin", headers=AUTH)
        assert answer.status_code == 200, answer.text
        state: dict[str, Any] = answer.json()
        return state

    async def chaos(self, fault: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.post(f"http://127.0.0.1:{self.port}/chaos/{fault}", headers=AUTH)
        assert answer.status_code == 200, answer.text

    def admin_log(self, text: str) -> list[dict[str, Any]]:
        return [record for record in map(json.loads, self.lines) if text in record["message"]]


@pytest.fixture
def toyprod(tmp_path: Path) -> Iterator[Toyprod]:
    """toyprod served by uvicorn on a free port of 127.0.0.1 (the http executor makes real requests)."""
    lines: list[str] = []
    port = free_port()
    app = create_app(base_config(tmp_path / "toyprod"), sinks=[lines.append])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("toyprod did not start")
        time.sleep(0.02)
    try:
        yield Toyprod(port, lines)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Lab:
    settings: Settings
    catalogue: Catalogue
    policy: Policy
    scripts: Path
    stub: Stub
    store: Store
    buffer: MetricBuffer
    heartbeats: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))

    def activities(self, settings: Settings | None = None, policy: Policy | None = None) -> RemediationActivities:
        return RemediationActivities(self.store, self.catalogue, policy or self.policy, settings or self.settings)

    def environment(self) -> ActivityEnvironment:
        env = ActivityEnvironment()
        env.metric_meter = self.runtime.metric_meter
        env.on_heartbeat = lambda *details: self.heartbeats.append(details)
        return env

    async def run(self, action: str, incident: str | None = None, **overrides: Any) -> ActionResult:
        acts = overrides.pop("activities", None) or self.activities()
        env = overrides.pop("env", None) or self.environment()
        data = run_input(action, incident or f"inc-{uuid.uuid4().hex[:10]}", **overrides)
        result: ActionResult = await env.run(acts.run_remediation_action, data)
        return result

    def runs_counted(self) -> list[tuple[str, str, int | float]]:
        return [
            (str(u.attributes["action"]), str(u.attributes["outcome"]), u.value)
            for u in self.buffer.retrieve_updates()
            if u.metric.name == RUNS_METRIC
        ]


def run_input(action: str, incident: str, **overrides: Any) -> RunActionInput:
    values: dict[str, Any] = {
        "incident_id": incident,
        "proposal_id": 1,
        "action": action,
        "labels": LABELS,
        "severity": Severity.CRITICAL,
        "confidence": 0.9,
    }
    values.update(overrides)
    return RunActionInput.model_validate(values)


def write_policy(path: Path, *, dry_run: bool | str = False) -> Path:
    rules = [{"name": "never-touch-vigil", "namespaces": ["vigil"], "mode": "never"}]
    path.write_text(json.dumps({"dry_run": dry_run, "rules": rules}))
    return path


@pytest.fixture
async def lab(tmp_path: Path, store: Store) -> AsyncIterator[Lab]:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name, body in SCRIPTS.items():
        (scripts / name).write_text(f"#!/bin/sh\n{body}")
        (scripts / name).chmod(0o755)
    stub = Stub()
    actions = tmp_path / "actions"
    actions.mkdir()
    entries = [
        script_action("say-hello", "hello.sh"),
        script_action("fail", "fail.sh"),
        script_action("slow", "slow.sh", timeout=1),
        script_action("append-once", "append.sh", idempotent=False),
        script_action("append-again", "append.sh", idempotent=True),
        script_action("wait-for-heartbeat", "beat.sh"),
        echo_action(stub.port),
    ]
    (actions / "test.yml").write_text(json.dumps(entries))
    settings = Settings.model_validate(
        {
            "state_dir": tmp_path / "state",
            "chaos_token": SecretStr(TOKEN),
            "api_token": SecretStr(API_SECRET),
            "toyprod_port": free_port(),
            "remediation_scripts_dir": scripts,
            "actions_dirs": [actions],
            "monitoring": False,
            "prometheus_url": None,
        }
    )
    catalogue = load_configured_catalogue(settings)
    policy = load_policy(write_policy(tmp_path / "policy.yml"), catalogue)
    try:
        yield Lab(settings, catalogue, policy, scripts, stub, store, MetricBuffer(1000))
    finally:
        stub.stop()


def on_toyprod(lab: Lab, toyprod: Toyprod, **changes: Any) -> Settings:
    return lab.settings.model_copy(update={"toyprod_port": toyprod.port, **changes})


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- http executor against toyprod ---------------------------------------------------------------------------


async def test_rollback_after_a_bad_deploy_succeeds_once(lab: Lab, toyprod: Toyprod, store: Store) -> None:
    await toyprod.chaos("bad-deploy")
    assert (await toyprod.admin())["version"] != VERSION
    acts = lab.activities(on_toyprod(lab, toyprod))
    incident = f"inc-{uuid.uuid4().hex[:10]}"

    result = await lab.run("toyprod-rollback-deploy", incident, activities=acts)
    assert result.outcome == ActionOutcome.SUCCEEDED, result.output
    assert result.executed
    assert not result.dry_run
    assert not result.idempotent
    assert result.output.startswith("HTTP 200: ")
    assert '"changed":true' in result.output
    assert TOKEN not in result.output
    assert result.params == {"service": "toyprod"}
    assert result.verification is not None
    assert 'service="toyprod"' in (result.verification.promql or "")
    assert result.verification.condition == "< 0.01"
    assert result.verification.for_seconds == 120
    assert result.started_at is not None
    assert result.finished_at is not None
    assert (await toyprod.admin())["version"] == VERSION

    again = await lab.run("toyprod-rollback-deploy", incident, activities=acts)
    assert (again.outcome, again.executed, again.output) == (ActionOutcome.SUCCEEDED, False, result.output)
    assert len(toyprod.admin_log("admin rollback")) == 1  # the executor ran once
    [run] = await store.action_runs(incident)
    assert (run.status, run.attempts, run.action, run.params) == (
        "succeeded",
        1,
        "toyprod-rollback-deploy",
        {"service": "toyprod"},
    )
    assert lab.runs_counted() == [("toyprod-rollback-deploy", "succeeded", 1)]  # a replay is not a new run


async def test_wrong_token_fails_without_showing_it(lab: Lab, toyprod: Toyprod) -> None:
    wrong = "wrong-token-5d1e"
    acts = lab.activities(on_toyprod(lab, toyprod, chaos_token=SecretStr(wrong)))
    result = await lab.run("toyprod-restart", activities=acts)
    assert result.outcome == ActionOutcome.FAILED
    assert result.output.startswith("HTTP 401: ")
    assert wrong not in result.output
    assert TOKEN not in result.output
    assert (await toyprod.admin())["restarts"] == 0


async def test_unreachable_server_fails_with_the_reason(lab: Lab) -> None:
    result = await lab.run("toyprod-restart")  # nothing listens on the settings' toyprod port
    assert result.outcome == ActionOutcome.FAILED
    assert result.executed
    assert f"POST http://127.0.0.1:{lab.settings.toyprod_port}/admin/restart failed: ConnectError" in result.output


async def test_dry_run_changes_nothing(lab: Lab, toyprod: Toyprod, tmp_path: Path) -> None:
    await toyprod.chaos("bad-deploy")
    before = await toyprod.admin()
    dry = load_policy(write_policy(tmp_path / "dry.yml", dry_run=True), lab.catalogue)
    result = await lab.run("toyprod-rollback-deploy", activities=lab.activities(on_toyprod(lab, toyprod), dry))
    assert (result.outcome, result.dry_run, result.executed) == (ActionOutcome.DRY_RUN, True, True)
    assert result.output == (
        f"dry run: would POST http://127.0.0.1:{toyprod.port}/admin/rollback (headers: Authorization)"
    )
    assert await toyprod.admin() == before
    assert toyprod.admin_log("admin rollback") == []


async def test_request_rendering_and_redaction(lab: Lab) -> None:
    """URL values are quoted (no path traversal), a lone placeholder in the body keeps its type, and neither the
    token nor any other header value comes back, even when the server echoes them."""
    labels = {**LABELS, "target": "../x y", "size": "7"}
    result = await lab.run("echo-request", labels=labels)
    assert result.outcome == ActionOutcome.FAILED
    assert result.output.startswith("HTTP 500: ")
    echo = json.loads(result.output.removeprefix("HTTP 500: "))
    assert echo["path"] == "/items/..%2Fx%20y"
    assert echo["body"] == {"size": 7, "note": "size 7", "url": f"http://127.0.0.1:{lab.settings.toyprod_port}"}
    assert echo["headers"]["Authorization"] == REDACTED
    assert echo["headers"]["X-Static"] == REDACTED
    assert TOKEN not in result.output
    assert STATIC_HEADER not in result.output
    assert result.verification is not None
    assert result.verification.promql == 'up{target="../x y"}'


def test_redact_replaces_every_secret_then_cuts(tmp_path: Path) -> None:
    (tmp_path / "chaos-token").write_text("file-token-0b7c\n")
    settings = Settings.model_validate(
        {
            "state_dir": tmp_path,
            "chaos_token": None,
            "api_token": SecretStr(API_SECRET),
            "database_url": SecretStr("postgresql://vigil:db-pass-4411@db:5432/vigil"),
            "llm_api_key": SecretStr("llm-key-99"),
        }
    )
    text = f"a {API_SECRET} b file-token-0b7c c db-pass-4411 d llm-key-99 e extra-1"
    assert redact(text, settings, ["extra-1"]) == "a [redacted] b [redacted] c [redacted] d [redacted] e [redacted]"
    long = "x" * (MAX_OUTPUT_CHARS - 5) + API_SECRET
    cut = redact(long, settings)
    assert len(cut) == MAX_OUTPUT_CHARS
    assert cut.endswith("…")
    assert "api-se" not in cut


# --- script executor ------------------------------------------------------------------------------------------


async def test_script_output_environment_and_redaction(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_LEAK_CHECK", "should-not-pass")
    result = await lab.run("say-hello")
    assert result.outcome == ActionOutcome.SUCCEEDED, result.output
    lines = result.output.splitlines()
    assert lines[:4] == ["exit 0", "hello world", "leak: [redacted]", "to stderr"]
    environment = dict(line.split("=", 1) for line in lines[4:])
    assert environment["PATH"].startswith("/usr/local/sbin")
    assert "VIGIL_LEAK_CHECK" not in environment
    assert "HOME" not in environment
    assert API_SECRET not in result.output
    assert result.verification is not None
    assert (result.verification.promql, result.verification.condition, result.verification.for_seconds) == (
        None,
        None,
        0,
    )


async def test_script_exit_code_fails(lab: Lab) -> None:
    result = await lab.run("fail")
    assert result.outcome == ActionOutcome.FAILED
    assert result.output == "exit 3\ndisk is read-only"


async def test_script_timeout_kills_the_process_group(lab: Lab) -> None:
    started = time.monotonic()
    result = await lab.run("slow")
    assert result.outcome == ActionOutcome.FAILED
    assert result.output.startswith("timed out after 1s (process group killed)")
    assert time.monotonic() - started < 10
    child = int((lab.scripts / "child.pid").read_text())
    assert not alive(child)


# --- refusals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "overrides", "outcome", "why"),
    [
        ("toyprod-restart", {"params": {"force": "true"}}, "refused", "'force': not a parameter of toyprod-restart"),
        ("toyprod-grow-db-pool", {"params": {"size": "500"}}, "refused", "size: '500' refused: above maximum 100"),
        ("toyprod-restart", {"params": {"service": "vigil-api"}}, "refused", "not one of ['toyprod']"),
        ("toyprod-restart", {"labels": {"namespace": "demo"}}, "refused", "service: no value"),
        ("toyprod-restart", {"labels": {**LABELS, "namespace": "vigil"}}, "refused", "rule never-touch-vigil"),
        ("delete-everything", {}, "not_in_catalogue", "no action 'delete-everything' in the catalogue"),
    ],
)
async def test_requests_outside_the_catalogue_are_refused(
    lab: Lab, store: Store, action: str, overrides: dict[str, Any], outcome: str, why: str
) -> None:
    incident = f"inc-{uuid.uuid4().hex[:10]}"
    result = await lab.run(action, incident, **overrides)
    assert (result.outcome.value, result.executed) == (outcome, False)
    assert why in result.output
    assert await store.action_runs(incident) == []
    assert lab.runs_counted() == [(action, outcome, 1)]


# --- idempotency ----------------------------------------------------------------------------------------------


async def test_the_same_key_runs_the_executor_once(lab: Lab, store: Store) -> None:
    (lab.scripts / "release").touch()
    incident = f"inc-{uuid.uuid4().hex[:10]}"
    first = await lab.run("append-once", incident)
    second = await lab.run("append-once", incident)
    assert (first.outcome, first.executed) == (ActionOutcome.SUCCEEDED, True)
    assert (second.outcome, second.executed, second.output) == (ActionOutcome.SUCCEEDED, False, first.output)
    assert (lab.scripts / "runs.log").read_text().splitlines() == ["run"]
    rollback = await lab.run("append-once", incident, rollback=True)  # another key: incident/1/rollback
    assert rollback.key == f"{incident}/1/rollback"
    assert rollback.executed
    assert len((lab.scripts / "runs.log").read_text().splitlines()) == 2
    assert [(run.key, run.status) for run in await store.action_runs(incident)] == [
        (f"{incident}/1", "succeeded"),
        (f"{incident}/1/rollback", "succeeded"),
    ]


async def test_concurrent_claims_of_one_key_have_one_winner(store: Store) -> None:
    key = f"inc-{uuid.uuid4().hex[:10]}/1"
    claims = await asyncio.gather(
        *(
            store.claim_action_run(
                key, incident_id=key[:-2], proposal_id=1, action="a", params={"n": str(i)}, dry_run=False
            )
            for i in range(8)
        )
    )
    winners = [run for run, claimed in claims if claimed]
    assert len(winners) == 1
    assert {run.params["n"] for run, _ in claims} == {winners[0].params["n"]}  # the losers read the winner's row
    finished = await store.finish_action_run(key, "unknown", "x", only_running=True)
    assert finished is not None
    assert finished.status == "unknown"
    assert await store.finish_action_run(key, "unknown", "y", only_running=True) is None
    assert await store.restart_action_run(key) is None


@pytest.mark.parametrize("idempotent", [False, True])
async def test_an_attempt_that_died_mid_action(lab: Lab, store: Store, idempotent: bool) -> None:
    """The first attempt is cancelled while its script runs (as when its worker is lost): the script's process
    is killed and the run stays 'running'. The retry runs an idempotent action again, and reports a
    non-idempotent one UNKNOWN without running it."""
    action = "append-again" if idempotent else "append-once"
    incident = f"inc-{uuid.uuid4().hex[:10]}"
    runs = lab.scripts / "runs.log"
    env = lab.environment()
    first = env.run(lab.activities().run_remediation_action, run_input(action, incident))
    task = asyncio.ensure_future(first)
    await eventually(lambda: _exists(runs), bool, timeout=10)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int((lab.scripts / "append.pid").read_text())
    await eventually(lambda: _not_alive(pid), bool, timeout=5)
    [run] = await store.action_runs(incident)
    assert (run.status, run.attempts, run.finished_at) == ("running", 1, None)

    (lab.scripts / "release").touch()
    retry = await lab.run(action, incident)
    if idempotent:
        assert (retry.outcome, retry.executed) == (ActionOutcome.SUCCEEDED, True)
        assert retry.output == "exit 0\nappended"
        assert runs.read_text().splitlines() == ["run", "run"]
        [run] = await store.action_runs(incident)
        assert (run.status, run.attempts) == ("succeeded", 2)
    else:
        assert (retry.outcome, retry.executed) == (ActionOutcome.UNKNOWN, False)
        assert "not run again" in retry.output
        assert runs.read_text().splitlines() == ["run"]
        [run] = await store.action_runs(incident)
        assert (run.status, run.attempts) == ("unknown", 1)
        later = await lab.run(action, incident)
        assert (later.outcome, later.executed) == (ActionOutcome.UNKNOWN, False)
        assert runs.read_text().splitlines() == ["run"]


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def _not_alive(pid: int) -> bool:
    return not alive(pid)


async def test_heartbeats_while_the_executor_runs(lab: Lab) -> None:
    """The script only finishes once a second heartbeat has been sent while it runs."""

    def heartbeat(*details: Any) -> None:
        lab.heartbeats.append(details)
        if len(lab.heartbeats) >= 2:
            (lab.scripts / "beat").touch()

    env = lab.environment()
    env.on_heartbeat = heartbeat
    result = await lab.run("wait-for-heartbeat", env=env)
    assert result.outcome == ActionOutcome.SUCCEEDED
    assert result.output == "exit 0\nsaw a heartbeat"
    assert lab.heartbeats[:2] == [("running wait-for-heartbeat",)] * 2
    assert lab.runs_counted() == [("wait-for-heartbeat", "succeeded", 1)]


# --- planning -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> tuple[Catalogue, Policy]:
    catalogue = load_catalogue([SHIPPED_ACTIONS], Settings())
    return catalogue, load_policy(SHIPPED_POLICY, catalogue)


def plan_input(candidates: list[str], **overrides: Any) -> PlanInput:
    values: dict[str, Any] = {
        "incident_id": "inc-plan",
        "labels": LABELS,
        "severity": Severity.CRITICAL,
        "confidence": 0.9,
        "candidates": candidates,
    }
    values.update(overrides)
    return PlanInput.model_validate(values)


def test_plan_takes_the_first_candidate_that_passes(shipped: tuple[Catalogue, Policy]) -> None:
    catalogue, policy = shipped
    result = plan(
        catalogue,
        policy,
        plan_input(
            [
                "reboot-the-world",
                "toyprod-rollback-deploy",
                "toyprod-rollback-deploy",
                "toyprod-restart",
                "toyprod-disk-free",
            ],
            exclude=["toyprod-rollback-deploy"],
        ),
    )
    assert result.skipped == [
        "reboot-the-world: not in the catalogue",
        "toyprod-rollback-deploy: already tried in this incident",
    ]
    assert result.chosen is not None
    assert result.chosen.model_dump() == {
        "action": "toyprod-restart",
        "description": "Restart toyprod, clearing a memory leak and a runaway CPU burn.",
        "params": {"service": "toyprod"},
        "mode": "auto",
        "rule": "toyprod-safe-fixes-auto",
        "policy_reason": "rule toyprod-safe-fixes-auto allows auto at confidence 0.9 >= 0.8",
        "dry_run": False,
    }
    low = plan(catalogue, policy, plan_input(["toyprod-restart"], confidence=0.5)).chosen
    assert low is not None
    assert (low.mode, low.rule) == ("approval", "toyprod-safe-fixes-auto")


def test_plan_skips_what_does_not_bind_or_is_forbidden(shipped: tuple[Catalogue, Policy]) -> None:
    catalogue, policy = shipped
    other = plan(catalogue, policy, plan_input(["toyprod-restart"], labels={"service": "billing"}))
    assert other.chosen is None
    assert other.skipped == [
        "toyprod-restart: cannot bind parameters: service: 'billing' from alert.labels.service refused: "
        "not one of ['toyprod']"
    ]
    vigil = plan(
        catalogue, policy, plan_input(["toyprod-restart", "toyprod-disk-free"], labels={**LABELS, "namespace": "vigil"})
    )
    assert vigil.chosen is None
    assert vigil.skipped == [
        "toyprod-restart: rule never-touch-vigil-or-monitoring requires that it never runs",
        "toyprod-disk-free: rule never-touch-vigil-or-monitoring requires that it never runs",
    ]
    assert plan(catalogue, policy, plan_input([])).model_dump() == {"chosen": None, "skipped": []}


async def test_plan_remediation_activity(lab: Lab) -> None:
    result = await lab.environment().run(lab.activities().plan_remediation, plan_input(["fail", "say-hello"]))
    assert result.chosen is not None
    assert result.chosen.action == "fail"
    assert (result.chosen.mode, result.chosen.rule, result.chosen.dry_run) == ("approval", None, False)


# --- verification ---------------------------------------------------------------------------------------------


async def test_measure_takes_the_deciding_sample(lab: Lab) -> None:
    stub = lab.stub
    stub.vector("errors", 0.001, 0.2, 0.004)
    stub.vector("ok", 0.001, 0.004)
    stub.vector("expiry", 4e6, 3e6)
    stub.vector("up", 1, 0, 1)
    stub.vector("nan", "NaN")
    stub.answers["scalar"] = (200, {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}})
    stub.answers["bad"] = (400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"})

    worst = await measure(stub.url, "errors", "< 0.01")
    assert (worst.value, worst.holds) == (0.2, False)
    assert "deciding sample of 3" in worst.detail
    assert (await measure(stub.url, "ok", "< 0.01")).model_dump() == {
        "value": 0.004,
        "holds": True,
        "detail": "0.004 < 0.01 holds (deciding sample of 2)",
    }
    assert (await measure(stub.url, "expiry", "> 2592000")).value == 3e6
    assert (await measure(stub.url, "up", "== 1")).model_dump(include={"value", "holds"}) == {
        "value": 0,
        "holds": False,
    }
    assert (await measure(stub.url, "scalar", ">= 3")).holds
    empty = await measure(stub.url, "absent", "< 1")
    assert (empty.value, empty.holds, empty.detail) == (None, False, "no data: the query returned no samples")
    nan = await measure(stub.url, "nan", "< 1")
    assert (nan.value, nan.holds) == (None, False)
    assert "no finite value" in nan.detail
    bad = await measure(stub.url, "bad", "< 1")
    assert (bad.value, bad.holds) == (None, False)
    assert bad.detail == "Prometheus answered HTTP 400: bad_data: parse error at char 4"
    down = await measure(f"http://127.0.0.1:{free_port()}", "errors", "< 1")
    assert (down.value, down.holds) == (None, False)
    assert down.detail.startswith("Prometheus unreachable: ConnectError")
    assert stub.queries[:2] == ["errors", "ok"]


async def test_measure_recovery_activity(lab: Lab) -> None:
    lab.stub.vector('up{target="world"}', 1)
    env = lab.environment()
    data = MeasureInput(promql='up{target="world"}', condition="== 1")
    configured = lab.activities(lab.settings.model_copy(update={"prometheus_url": lab.stub.url}))
    assert (await env.run(configured.measure_recovery, data)).holds
    none = await env.run(lab.activities().measure_recovery, data)
    assert none.model_dump() == {"value": None, "holds": False, "detail": "no Prometheus configured"}


def test_verification_spec_fills_in_parameters(shipped: tuple[Catalogue, Policy]) -> None:
    catalogue, _ = shipped
    spec = verification_spec(catalogue.get("toyprod-disk-free"), {"service": "toyprod"})
    assert spec.model_dump() == {
        "promql": 'max(toyprod_disk_usage_ratio{service="toyprod"})',
        "condition": "< 0.8",
        "for_seconds": 60,
        "within_seconds": 300,
    }


# --- configuration and the worker -----------------------------------------------------------------------------


def test_shipped_actions_can_be_left_out(lab: Lab) -> None:
    assert configured_action_paths(lab.settings)[0] == SHIPPED_ACTIONS
    own = lab.settings.model_copy(update={"shipped_actions": False})
    assert configured_action_paths(own) == lab.settings.actions_dirs
    names = set(load_configured_catalogue(own).actions)
    assert "say-hello" in names
    assert not any(name.startswith("toyprod-") for name in names)


async def test_integrations_worker_refuses_an_invalid_catalogue(
    tmp_path: Path, temporal_client: Client, database_url: str
) -> None:
    (tmp_path / "bad.yml").write_text("name: Bad Name\ndescription: x\n")
    settings = Settings.model_validate(
        {"database_url": SecretStr(database_url), "actions_dirs": [tmp_path], "state_dir": tmp_path}
    )
    async with AsyncExitStack() as stack:
        with pytest.raises(RemediationConfigError) as raised:
            await build_worker("integrations", temporal_client, stack, settings)
    message = str(raised.value)
    assert f"{tmp_path / 'bad.yml'}: name:" in message
    assert "executor" in message


def test_vigil_worker_fails_at_start_naming_the_problem(tmp_path: Path, temporal_client: Client) -> None:
    (tmp_path / "bad.yml").write_text("name: ok-name\ndescription: x\nexecutor: {type: ftp}\n")
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_client.service_client.config.target_host,
        "VIGIL_ACTIONS_DIRS": str(tmp_path),
        "VIGIL_STATE_DIR": str(tmp_path / "state"),
        "VIGIL_INTEGRATIONS_WORKER_METRICS_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "vigil", "worker", "integrations"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "worker integrations cannot start: " in done.stderr
    assert f"{tmp_path / 'bad.yml'}: executor" in done.stderr
    assert "timeout_seconds" in done.stderr  # every problem, not only the first
