"""`vigil up` run as a person runs it, in a subprocess: shared by the stack and end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psutil

from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
PORT_SETTINGS = (
    "TEMPORAL_PORT",
    "TEMPORAL_UI_PORT",
    "API_PORT",
    "CONSOLE_PORT",
    "INCIDENTS_WORKER_METRICS_PORT",
    "ML_WORKER_METRICS_PORT",
    "INTEGRATIONS_WORKER_METRICS_PORT",
    "TOYPROD_PORT",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
)
T = TypeVar("T")
SHORT_MONITORING = {
    "VIGIL_TOYPROD_TRAFFIC_RPS": "20",
    "VIGIL_MONITORING_SCRAPE_INTERVAL": "1s",
    "VIGIL_MONITORING_EVALUATION_INTERVAL": "1s",
    "VIGIL_MONITORING_ALERT_FOR": "5s",
    "VIGIL_MONITORING_GROUP_WAIT": "1s",
    "VIGIL_MONITORING_GROUP_INTERVAL": "2s",
}
"""Toyprod under traffic, and Prometheus and Alertmanager with timings a test can wait for (the rules unchanged)."""


def poll(probe: Callable[[], T | None], timeout: float, what: Callable[[], str], every: float = 0.2) -> T:
    """Call `probe` until it returns something other than None (a refused connection counts as None); fail
    naming `what()` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
        except httpx.TransportError:
            result = None
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what()}")
        time.sleep(every)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    poll(lambda: True if condition() else None, timeout, lambda: what, every=0.1)


def person_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a person running `vigil up`: embedded dependencies, free ports, a private state dir,
    and not under pytest (NiceGUI changes its behaviour when it sees PYTEST_CURRENT_TEST)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VIGIL_") and key not in {"DATABASE_URL", "TEMPORAL_ADDRESS", "PYTEST_CURRENT_TEST"}
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["VIGIL_STATE_DIR"] = str(tmp_path / "state")
    env["VIGIL_DEBOUNCE_SECONDS"] = "1"
    env.update({f"VIGIL_{setting}": str(free_port()) for setting in PORT_SETTINGS})
    return env


class VigilUp:
    """`python -m vigil up` in its own process group, its output collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd  # not the repository, so a developer's .env there cannot leak in
        self.state_dir = Path(env["VIGIL_STATE_DIR"])
        self.lines: list[str] = []
        self.descendants: dict[int, psutil.Process] = {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigil", "up"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,  # its own foreground-like group: `interrupt` signals it as a terminal's Ctrl-C does
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def report(self) -> str:
        """Its output and the tail of every child's log: what a failing test shows."""
        logs = sorted((self.state_dir / "logs").glob("*.log"))
        tails = "\n".join(f"== {log.name}\n{log.read_text(errors='replace')[-2500:]}" for log in logs)
        return f"{self.output}\n{tails}"

    def wait_up(self, timeout: float) -> None:
        def up() -> bool | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"vigil up exited with {self.proc.returncode}:\n{self.report()}")
            return True if any("Vigil is up" in line for line in self.lines) else None

        poll(up, timeout, lambda: f"'Vigil is up':\n{self.report()}")

    def vigil(self, *args: str) -> str:
        """Run another `vigil` command with the same environment; it must succeed."""
        result = subprocess.run(
            [sys.executable, "-m", "vigil", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"vigil {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def collect_descendants(self) -> None:
        """Remember every process it started (PostgreSQL runs detached, so it is found by its pid file)."""
        found: list[psutil.Process] = psutil.Process(self.proc.pid).children(recursive=True)
        postmaster = self.state_dir / "pgdata" / "postmaster.pid"
        if postmaster.exists():
            found.append(psutil.Process(int(postmaster.read_text().split()[0])))
        self.descendants.update((p.pid, p) for p in found)

    def interrupt(self, timeout: float) -> int:
        """Ctrl-C in a terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def survivors(self) -> list[str]:
        alive: list[str] = []
        for process in self.descendants.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{process.pid} {' '.join(process.cmdline())}")
            except psutil.NoSuchProcess:
                continue
        return alive

    def kill(self) -> None:
        """Last resort after a failure: an orderly stop, else SIGKILL (the children follow by PDEATHSIG)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


PORT_TAKEN = "address already in use"


def start_vigil_up(home: Path, configure: Callable[[dict[str, str]], None], timeout: float = 300) -> VigilUp:
    """`vigil up` in `home` with `person_env` as `configure` leaves it, waited for. Ports are picked free before the
    children bind them, and another process can take one in between: only then is it started once more, on new
    ports (the same state dir); any other failure fails."""

    def started() -> VigilUp:
        env = person_env(home)
        configure(env)
        run = VigilUp(env, cwd=home)
        try:
            run.wait_up(timeout)
        except AssertionError:
            run.kill()
            raise
        return run

    try:
        return started()
    except AssertionError as exc:
        if PORT_TAKEN not in str(exc):
            raise
        return started()
