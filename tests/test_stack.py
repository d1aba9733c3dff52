"""`vigil up` on the real binaries: process supervision, and the whole stack surviving a restart."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.vigil_up import VigilUp, person_env, wait_until
from vigil.stack.masking import mask_url, redact
from vigil.stack.processes import ManagedProcess, make_private_dir, pid_alive
from vigil.stack.temporal_server import ensure_search_attributes, temporal_binary
from vigil.temporal import SEARCH_ATTRIBUTES

REPO_ROOT = Path(__file__).resolve().parent.parent
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")


def test_managed_process_stops_its_child(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", SLEEPER, tmp_path / "logs" / "sleeper.log")
    process.start()
    pid = process.pid
    assert pid is not None
    assert process.is_alive()
    assert pid_alive(pid)

    assert process.stop(grace=10) == -signal.SIGTERM
    assert not process.is_alive()
    assert not pid_alive(pid)
    assert "stopped with exit code -15" in process.log_path.read_text()


def test_managed_process_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('SIGTERM', 'ignored', flush=True)\n"  # in two pieces: the log also holds the command line
        "time.sleep(60)"
    )
    process = ManagedProcess("stubborn", [sys.executable, "-c", code], tmp_path / "stubborn.log")
    process.start()
    wait_until(lambda: "SIGTERM ignored" in process.log_path.read_text(), 30, "the child to ignore SIGTERM")

    assert process.stop(grace=0.5) == -signal.SIGKILL
    assert "sending SIGKILL" in process.log_path.read_text()


@linux_only
def test_child_dies_with_its_killed_parent(tmp_path: Path) -> None:
    parent_code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from vigil.stack.processes import ManagedProcess
        child = ManagedProcess("sleeper", {SLEEPER!r}, Path({str(tmp_path / "sleeper.log")!r}))
        child.start()
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert pid_alive(child_pid)
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: not pid_alive(child_pid), 10, f"child {child_pid} to die with its parent")


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = person_env(tmp_path)
    env["VIGIL_TOYPROD_TRAFFIC_RPS"] = "2"
    env["VIGIL_RUNBOOKS_DIR"] = str(Path(__file__).parent / "fixtures" / "runbooks")  # a few: fast first index
    return env


@pytest.fixture
def run_stack(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], VigilUp]]:
    runs: list[VigilUp] = []

    def start() -> VigilUp:
        run = VigilUp(stack_env, cwd=tmp_path)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def test_vigil_up_fails_fast_on_a_port_in_use(run_stack: Callable[[], VigilUp], stack_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(stack_env["VIGIL_API_PORT"])))
        taken.listen()
        run = run_stack()
        assert run.proc.wait(60) == 1, run.output
    assert f"port {stack_env['VIGIL_API_PORT']} on 127.0.0.1 is already in use" in run.output
    assert "VIGIL_API_PORT" in run.output
    assert not (Path(stack_env["VIGIL_STATE_DIR"]) / "logs").exists(), "nothing may start before the check"


HOSTILE_PASSWORDS = [
    "s3cret",
    "Sec/ret9LEAK",
    "p@ss#w0rd",
    "a?b=c&d",
    "x@y/z#w?v",
    "c0l:on:s",
    "50%25off%",
    "pä$$wörd☃",
]


def test_database_urls_are_printed_without_secrets() -> None:
    assert mask_url("postgresql://vigil:s3cret@db.example:5432/vigil") == "postgresql://vigil:***@db.example:5432/vigil"
    assert mask_url("postgresql://postgres@/postgres?host=/tmp/x") == "postgresql://postgres@/postgres?host=/tmp/x"
    assert mask_url("not a url s3cret") == "***"
    for password in HOSTILE_PASSWORDS:
        for url in (
            f"postgresql://postgres:{password}@/postgres?host=/run/pg&port=5432",
            f"postgresql://vigil:{password}@db.example:5432/vigil?sslmode=require",
            f"postgresql://u:{password}@db/app#frag",
        ):
            masked = mask_url(url)
            assert password not in masked, (url, masked)
            assert masked.startswith(("postgresql://postgres:***@", "postgresql://vigil:***@", "postgresql://u:***@"))
        for parameter in ("password", "sslpassword", "PassFile", "sslkey", "api_token", "client_secret"):
            url = f"postgresql:///vigil?host=/run/pg&{parameter}={quote(password, safe='')}&application_name=vigil"
            assert mask_url(url) == f"postgresql:///vigil?host=/run/pg&{parameter}=***&application_name=vigil"
            if "&" not in password:  # unescaped, `&` would end the value: no parser can know it belongs to it
                assert password not in mask_url(f"postgresql:///vigil?{parameter}={password}&host=/run/pg")


def test_error_messages_about_a_database_are_redacted() -> None:
    for password in HOSTILE_PASSWORDS:
        url = f"postgresql://vigil:{password}@db.example/vigil?sslpassword=k3y"
        message = f"could not connect to {url}: password {password!r} rejected, sslpassword k3y"
        redacted = redact(message, url)
        assert password not in redacted
        assert "k3y" not in redacted


def test_the_state_dir_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    make_private_dir(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    fresh = tmp_path / "fresh" / "state"
    make_private_dir(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    make_private_dir(state, traverse_gid=os.getgid())
    assert stat.S_IMODE(state.stat().st_mode) == 0o710
    assert state.stat().st_gid == os.getgid()


def test_child_logs_are_private(tmp_path: Path) -> None:
    old_log = tmp_path / "old.log"
    old_log.write_text("from an earlier run\n")
    old_log.chmod(0o644)
    for log in (old_log, tmp_path / "new.log"):
        process = ManagedProcess("quick", [sys.executable, "-c", "print('hello')"], log)
        process.start()
        assert process.stop(grace=10) is not None
        assert stat.S_IMODE(log.stat().st_mode) == 0o600, log


async def test_search_attributes_missing_from_an_existing_server_are_registered() -> None:
    """The dev server registers `--search-attribute`s only when it creates its database file."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), dev_server_extra_args=["--headless"]
    )
    try:
        names = sorted(key.name for key in SEARCH_ATTRIBUTES)
        assert await ensure_search_attributes(env.client, "default") == names
        assert await ensure_search_attributes(env.client, "default") == []
    finally:
        await env.shutdown()


def _status(http: httpx.Client, path: str) -> int | None:
    try:
        return http.get(path).status_code
    except httpx.TransportError:
        return None


@pytest.mark.timeout(600)
def test_vigil_up_serves_stops_cleanly_and_keeps_incidents(
    run_stack: Callable[[], VigilUp], stack_env: dict[str, str]
) -> None:
    api = f"http://127.0.0.1:{stack_env['VIGIL_API_PORT']}"

    first = run_stack()
    first.wait_up(timeout=180)
    first.collect_descendants()
    with httpx.Client(base_url=api, timeout=30, trust_env=False) as http:
        response = http.post(
            "/api/v1/alerts", json={"name": "HighErrorRate", "service": "checkout", "severity": "critical"}
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        assert body["accepted"] == 1
        [incident] = body["incidents"]
        assert incident["alerts"] == 1
        incident_id = incident["incident_id"]
        wait_until(
            lambda: http.get(f"/api/v1/incidents/{incident_id}").status_code == 200,
            60,
            f"incident {incident_id}; logs:\n{first.report()}",
        )

        # Triage diagnoses the incident on the ml worker process (deterministic RCA: no LLM configured).
        wait_until(
            lambda: (
                (http.get(f"/api/v1/incidents/{incident_id}").json().get("diagnosis") or {}).get("source")
                == "deterministic"
            ),
            120,
            f"a diagnosis of {incident_id}; logs:\n{first.report()}",
        )
        # Each worker process serves the Temporal SDK's Prometheus metrics on its own port, the ml worker also
        # Vigil's diagnosis metrics.
        for role in ("INCIDENTS", "ML", "INTEGRATIONS"):
            port = stack_env[f"VIGIL_{role}_WORKER_METRICS_PORT"]
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10, trust_env=False)
            assert metrics.status_code == 200
            assert "temporal_" in metrics.text, (role, metrics.text[:500])
            if role == "ML":
                assert "vigil_diagnoses_total" in metrics.text, metrics.text[-2000:]
                assert "vigil_diagnosis_stage_seconds" in metrics.text
        # A child that dies is restarted by the supervisor.
        [api_process] = [p for p in psutil.Process(first.proc.pid).children() if p.cmdline()[-2:] == ["vigil", "api"]]
        api_process.kill()
        wait_until(lambda: any("restarted api" in line for line in first.lines), 30, "the API to be restarted")
        wait_until(lambda: _status(http, "/healthz") == 200, 60, f"the restarted API; logs:\n{first.report()}")
    first.collect_descendants()
    # temporal, 3 workers, api, console, postgres, toyprod, traffic (+ prometheus, alertmanager where installed)
    assert len(first.descendants) >= 9, first.descendants
    commands = [" ".join(p.cmdline()) for p in first.descendants.values() if p.is_running()]
    assert any(c.endswith("vigil toyprod") for c in commands), commands
    assert any(" vigil traffic --rps 2 " in c for c in commands), commands
    if "prometheus is ready" in first.output:
        assert any("--web.listen-address=127.0.0.1:" + stack_env["VIGIL_PROMETHEUS_PORT"] in c for c in commands)

    assert first.interrupt(timeout=120) == 0, first.output
    assert "Vigil stopped." in first.output
    assert first.survivors() == []

    second = run_stack()
    second.wait_up(timeout=180)
    second.collect_descendants()
    with httpx.Client(base_url=api, timeout=30, trust_env=False) as http:
        detail = http.get(f"/api/v1/incidents/{incident_id}")
        assert detail.status_code == 200, detail.text
        occurrence = detail.json()["incident_id"]
        assert occurrence.startswith(incident_id)  # the webhook answers the group's id; the incident has its own
        wait_until(
            lambda: occurrence in {row["incident_id"] for row in http.get("/api/v1/incidents").json()},
            30,
            f"incident {occurrence} in the list",
        )
    assert second.interrupt(timeout=120) == 0, second.output
    assert second.survivors() == []
