"""`vigil up`: the whole stack on one machine, started step by step with health checks, then supervised.

Order: Temporal (embedded dev server unless TEMPORAL_ADDRESS), PostgreSQL (embedded unless DATABASE_URL),
migrations, the three workers, the API, the console, toyprod and its traffic, then Alertmanager and Prometheus
(when VIGIL_MONITORING and their binaries allow; configs rendered by `vigil.stack.monitoring`). Children run
in their own process groups, so a terminal Ctrl-C reaches only this supervisor, which then stops them in reverse
order; PR_SET_PDEATHSIG takes them down should the supervisor itself be killed.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from vigil.auth.bootstrap import ensure_admin
from vigil.auth.models import AuthError
from vigil.cli import WorkerRole
from vigil.health import probe_workers
from vigil.settings import Settings
from vigil.stack.masking import mask_url, redact
from vigil.stack.monitoring import (
    MonitoringBinaries,
    MonitoringSetupError,
    MonitoringTimings,
    RenderedMonitoring,
    alertmanager_command,
    ensure_chaos_token,
    find_binaries,
    prometheus_command,
    render,
)
from vigil.stack.postgres import EmbeddedPostgres, EmbeddedPostgresError, start_embedded_postgres
from vigil.stack.processes import ManagedProcess, make_private_dir
from vigil.stack.temporal_server import TemporalSetupError, dev_server_command, ensure_search_attributes
from vigil.store.database import migrate_database
from vigil.temporal import connect
from workflows.incident import IncidentWorkflow

TEMPORAL_READY_SECONDS = 60.0
MIGRATIONS_SECONDS = 120.0
WORKERS_READY_SECONDS = 180.0
WORKER_PROBE_SECONDS = 10.0
API_READY_SECONDS = 60.0
CONSOLE_READY_SECONDS = 90.0
TOYPROD_READY_SECONDS = 60.0
MONITORING_READY_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
QUICK_FAILURE_SECONDS = 30.0
"""A child that exits sooner than this after its start failed quickly; MAX_QUICK_FAILURES in a row: give up."""
MAX_QUICK_FAILURES = 5
MAX_RESTART_DELAY_SECONDS = 30.0
_ATTEMPT_SECONDS = 20.0
_POLL_SECONDS = 0.5

T = TypeVar("T")


class StackError(Exception):
    """A step of `vigil up` failed; the message names the step and the log to read."""


def _env_name(setting: str) -> str:
    return f"VIGIL_{setting.upper()}"


_PORT_HINTS = {
    "prometheus_port": " (the Debian package's own service? `sudo systemctl disable --now prometheus`)",
    "alertmanager_port": " (the Debian package's own service? `sudo systemctl disable --now prometheus-alertmanager`)",
}


def check_ports(settings: Settings, *, monitoring: bool = False) -> None:
    """Fail fast, naming the port and its setting, when a port Vigil would listen on is taken."""
    ports = [
        ("api_port", settings.api_host, settings.api_port),
        ("console_port", "127.0.0.1", settings.console_port),
        ("toyprod_port", "127.0.0.1", settings.toyprod_port),
    ]
    if monitoring:
        ports += [
            ("prometheus_port", "127.0.0.1", settings.prometheus_port),
            ("alertmanager_port", "127.0.0.1", settings.alertmanager_port),
        ]
    if settings.temporal_is_embedded:
        ports += [
            ("temporal_port", "127.0.0.1", settings.temporal_port),
            ("temporal_ui_port", "127.0.0.1", settings.temporal_ui_port),
        ]
    ports += [
        (f"{role}_worker_metrics_port", "127.0.0.1", getattr(settings, f"{role}_worker_metrics_port"))
        for role in WorkerRole
    ]
    owners: dict[int, str] = {}
    for setting, host, port in ports:
        if port in owners:
            raise StackError(
                f"{_env_name(setting)} and {_env_name(owners[port])} are both {port}; give each its own port"
            )
        owners[port] = setting
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is ok
                probe.bind(address)
        except OSError as exc:
            taken = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
            hint = _PORT_HINTS.get(setting, "")
            raise StackError(
                f"port {port} on {host} {taken}; stop what listens there or set {_env_name(setting)} to another port"
                + hint
            ) from exc


@dataclass
class _Child:
    process: ManagedProcess
    quick_failures: int = 0
    restart_at: float | None = None


@dataclass
class _PostgresWatch:
    """Supervision of the embedded PostgreSQL: pgserver starts it detached, so it is no `_Child`."""

    server: EmbeddedPostgres
    started_at: float
    quick_failures: int = 0
    restarts: int = 0
    restart_at: float | None = None
    restarting: asyncio.Task[None] | None = None


def _restart_delay(quick_failures: int) -> float:
    return min(2.0**quick_failures, MAX_RESTART_DELAY_SECONDS)


class _Stack:
    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings.model_copy(update={"state_dir": settings.state_dir.resolve()})
        self.console = console
        self.log_dir = self.settings.state_dir / "logs"
        self._phases: list[list[_Child]] = []  # in start order; stopped in reverse
        self._postgres: EmbeddedPostgres | None = None
        self._postgres_watch: _PostgresWatch | None = None
        self._database_url = ""
        self._http = httpx.AsyncClient(timeout=5.0, trust_env=False)
        self._monitoring: MonitoringBinaries | None = None
        self._monitoring_off = ""  # why monitoring is off, for the summary
        self._chaos_token_file: Path | None = None
        self._admin_password_file: Path | None = None
        self._prometheus_alerts_url = ""

    @property
    def _api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    @property
    def _console_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.console_port}"

    def _children(self) -> list[_Child]:
        return [child for phase in self._phases for child in phase]

    def _decide_monitoring(self) -> None:
        if not self.settings.monitoring:
            self._monitoring_off = "off (VIGIL_MONITORING=false)"
            return
        try:
            self._monitoring = find_binaries()
        except MonitoringSetupError as exc:
            self._monitoring_off = f"off: {exc}"

    async def start(self) -> None:
        self._decide_monitoring()
        check_ports(self.settings, monitoring=self._monitoring is not None)
        make_private_dir(self.settings.state_dir)
        make_private_dir(self.log_dir)
        self._ensure_admin()
        if self._monitoring_off:
            self.console.print(f"[yellow]! monitoring (Prometheus, Alertmanager) is {self._monitoring_off}[/]")
        client = await self._start_temporal()
        self._start_database()
        await self._migrate()
        await self._start_workers(client)
        await self._start_api()
        await self._start_console()
        await self._start_toyprod()
        if self._monitoring is not None:
            await self._start_monitoring(self._monitoring)

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None) -> _Child:
        process = ManagedProcess(name, argv, self.log_dir / f"{name}.log", env)
        process.start()
        return _Child(process)

    def _vigil(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "vigil", *args]

    def _child_env(self) -> dict[str, str]:
        """Children see the same stack: the database URL always; the Temporal address only when external, so
        that they still know Temporal is embedded (the console then links to its Web UI)."""
        temporal = (
            {"VIGIL_TEMPORAL_PORT": str(self.settings.temporal_port)}
            if self.settings.temporal_is_embedded
            else {"TEMPORAL_ADDRESS": self.settings.temporal_target}
        )
        return {
            **os.environ,
            **temporal,
            "DATABASE_URL": self._database_url,
            "VIGIL_STATE_DIR": str(self.settings.state_dir),
            "PYTHONUNBUFFERED": "1",
        }

    async def _wait_ready(
        self, what: str, children: Sequence[_Child], check: Callable[[], Awaitable[T]], timeout: float
    ) -> T:
        """Retry `check` until it returns; fail early when one of `children` exits, or at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error = "no answer"
        while True:
            for child in children:
                if not child.process.is_alive():
                    raise StackError(
                        f"{child.process.name} exited with code {child.process.returncode} while starting; "
                        f"see {child.process.log_path}"
                    )
            remaining = deadline - loop.time()
            if remaining <= 0:
                logs = ", ".join(str(child.process.log_path) for child in children)
                raise StackError(
                    f"{what} not ready after {timeout:g}s ({last_error})" + (f"; see {logs}" if logs else "")
                )
            try:
                async with asyncio.timeout(min(remaining, _ATTEMPT_SECONDS)):
                    return await check()
            except Exception as exc:  # whatever the reason, retry until the deadline
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await asyncio.sleep(_POLL_SECONDS)

    async def _http_ok(self, url: str) -> None:
        response = await self._http.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}: {response.text[:300]}")

    async def _start_temporal(self) -> Client:
        settings = self.settings
        children: list[_Child] = []
        if settings.temporal_is_embedded:
            try:
                command = dev_server_command(settings)
            except TemporalSetupError as exc:
                raise StackError(str(exc)) from exc
            children = [self._spawn("temporal", command, None)]
            self._phases.append(children)
            what = f"Temporal dev server on {settings.temporal_target}"
        else:
            what = f"Temporal at {settings.temporal_target} (TEMPORAL_ADDRESS)"
        client = await self._wait_ready(what, children, lambda: connect(settings), TEMPORAL_READY_SECONDS)
        try:
            added = await ensure_search_attributes(client, settings.temporal_namespace)
        except (TemporalSetupError, RPCError) as exc:
            raise StackError(f"registering Vigil's search attributes on {what} failed: {exc}") from exc
        self.console.print(f"[green]✓[/] {what} is ready, namespace {settings.temporal_namespace!r}")
        if added:
            self.console.print(f"  registered search attributes {', '.join(added)}")
        return client

    def _start_database(self) -> None:
        if self.settings.database_url is not None:
            self._database_url = self.settings.database_url.get_secret_value()
            self.console.print(f"[green]✓[/] PostgreSQL at {mask_url(self._database_url)} (DATABASE_URL)")
            return
        try:
            self._postgres = start_embedded_postgres(self.settings.state_dir)
        except EmbeddedPostgresError as exc:
            raise StackError(str(exc)) from exc
        self._database_url = self._postgres.url
        self._postgres_watch = _PostgresWatch(self._postgres, started_at=asyncio.get_running_loop().time())
        # pgserver opens the way to its data dir for the user the server runs as (as root: `pgserver`) to
        # everyone; close it again to the server's group.
        make_private_dir(self.settings.state_dir, traverse_gid=self._postgres.server_gid)
        self.console.print(
            f"[green]✓[/] embedded PostgreSQL is ready at {mask_url(self._database_url)}, "
            f"data in {self._postgres.pgdata}"
        )

    async def _migrate(self) -> None:
        try:
            async with asyncio.timeout(MIGRATIONS_SECONDS):
                applied = await migrate_database(self._database_url)
        except Exception as exc:
            failure = redact(str(exc), self._database_url)
            raise StackError(f"migrating the database {mask_url(self._database_url)} failed: {failure}") from exc
        done = f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema is up to date"
        self.console.print(f"[green]✓[/] database {done}")

    async def _start_workers(self, client: Client) -> None:
        env = self._child_env()
        phase = [self._spawn(f"worker-{role}", self._vigil("worker", role.value), env) for role in WorkerRole]
        self._phases.append(phase)
        infos = await self._wait_ready(
            "workers", phase, lambda: probe_workers(client, WORKER_PROBE_SECONDS), WORKERS_READY_SECONDS
        )
        polling = ", ".join(f"{info.task_queue} (pid {info.pid})" for info in infos)
        self.console.print(f"[green]✓[/] workers are polling {polling}")

    async def _start_api(self) -> None:
        child = self._spawn("api", self._vigil("api"), self._child_env())
        self._phases.append([child])
        url = f"{self._api_url}/readyz"
        await self._wait_ready(f"API ({url})", [child], lambda: self._http_ok(url), API_READY_SECONDS)
        self.console.print(f"[green]✓[/] API is ready on {self._api_url}")

    async def _start_console(self) -> None:
        child = self._spawn("console", self._vigil("console"), self._child_env())
        self._phases.append([child])
        url = f"{self._console_url}/login"  # every other page sends a browser without a session here (303)
        await self._wait_ready(f"console ({url})", [child], lambda: self._http_ok(url), CONSOLE_READY_SECONDS)
        self.console.print(f"[green]✓[/] console is ready on {self._console_url}")

    def _ensure_admin(self) -> None:
        """The first console admin when there is no user yet; its password stays in a 0600 file, never printed."""
        try:
            self._admin_password_file = ensure_admin(self.settings)
        except AuthError as exc:
            raise StackError(f"users: {exc}") from exc
        if self._admin_password_file is not None:
            self.console.print(
                f"[green]✓[/] console user 'admin', password in {self._admin_password_file} (readable by you only)"
            )

    async def _start_toyprod(self) -> None:
        settings = self.settings
        self._chaos_token_file = ensure_chaos_token(settings)
        env = self._child_env()
        phase = [self._spawn("toyprod", self._vigil("toyprod"), env)]
        if settings.toyprod_traffic_rps > 0:
            rps = f"{settings.toyprod_traffic_rps:g}"
            phase.append(self._spawn("traffic", self._vigil("traffic", "--rps", rps, "--duration", "0"), env))
        self._phases.append(phase)
        url = f"{self._toyprod_url}/healthz"
        await self._wait_ready(f"toyprod ({url})", phase, lambda: self._http_ok(url), TOYPROD_READY_SECONDS)
        traffic = f", traffic at {settings.toyprod_traffic_rps:g} req/s" if len(phase) > 1 else ", no traffic"
        self.console.print(f"[green]✓[/] toyprod is ready on {self._toyprod_url}{traffic}")

    async def _start_monitoring(self, binaries: MonitoringBinaries) -> None:
        settings = self.settings
        try:
            rendered: RenderedMonitoring = render(settings, MonitoringTimings())
        except (MonitoringSetupError, OSError, ValueError) as exc:
            raise StackError(f"rendering the Prometheus and Alertmanager configs failed: {exc}") from exc
        # Alertmanager first: Prometheus sends it alerts from its first evaluation on.
        for name, command, url in (
            ("alertmanager", alertmanager_command(binaries.alertmanager, rendered, settings), self._alertmanager_url),
            ("prometheus", prometheus_command(binaries.prometheus, rendered, settings), self._prometheus_url),
        ):
            child = self._spawn(name, command, None)
            self._phases.append([child])
            ready = f"{url}/-/ready"
            await self._wait_ready(
                f"{name} ({ready})", [child], functools.partial(self._http_ok, ready), MONITORING_READY_SECONDS
            )
            self.console.print(f"[green]✓[/] {name} is ready on {url}, config {rendered.directory}")
        # Debian builds Prometheus 2.x without its React UI: `/alerts` is 404 there, the classic page works.
        self._prometheus_alerts_url = await self._first_answering(self._prometheus_url, ["/alerts", "/classic/alerts"])

    @property
    def _temporal_incidents_url(self) -> str:
        """The Web UI's workflow list filtered to incidents: without it, probe and retention workflows mix in."""
        namespace = quote(self.settings.temporal_namespace, safe="")
        query = quote(f'WorkflowType="{IncidentWorkflow.__name__}"', safe="")
        return f"http://127.0.0.1:{self.settings.temporal_ui_port}/namespaces/{namespace}/workflows?query={query}"

    async def _first_answering(self, base: str, paths: Sequence[str]) -> str:
        """`base` + the first of `paths` that answers GET with 2xx or 3xx; the last one when none does."""
        for path in paths[:-1]:
            with suppress(httpx.HTTPError):
                if (await self._http.get(f"{base}{path}")).status_code < 400:
                    return f"{base}{path}"
        return f"{base}{paths[-1]}"

    @property
    def _toyprod_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.toyprod_port}"

    @property
    def _prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.prometheus_port}"

    @property
    def _alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.alertmanager_port}"

    def print_summary(self) -> None:
        settings = self.settings
        table = Table(title="Vigil", title_justify="left")
        table.add_column("what")
        table.add_column("where", overflow="fold")
        if settings.temporal_is_embedded:
            table.add_row("Temporal Web UI (incidents)", self._temporal_incidents_url)
        else:
            table.add_row("Temporal", f"{settings.temporal_target} (namespace {settings.temporal_namespace})")
        table.add_row("API docs", f"{self._api_url}/docs")
        table.add_row("Alertmanager webhook (POST)", f"{self._api_url}/api/v1/alerts/alertmanager")
        table.add_row("Grafana webhook (POST)", f"{self._api_url}/api/v1/alerts/grafana")
        table.add_row("Vigil alerts (POST JSON)", f"{self._api_url}/api/v1/alerts")
        table.add_row("Console", self._console_url)
        table.add_row("API metrics", f"{self._api_url}/metrics")
        for role in WorkerRole:
            port = getattr(settings, f"{role.value}_worker_metrics_port")
            table.add_row(f"{role.value} worker metrics", f"http://127.0.0.1:{port}/metrics")
        if self._postgres is not None:
            table.add_row("PostgreSQL", f"{mask_url(self._database_url)} (log: {self._postgres.log_path})")
        else:
            table.add_row("PostgreSQL", mask_url(self._database_url))
        table.add_row("toyprod (demo shop)", f"{self._toyprod_url} (metrics at /metrics)")
        if self._admin_password_file is not None:
            table.add_row("Console sign-in", f"user admin, password in {self._admin_password_file}")
        elif settings.oidc_enabled:
            table.add_row("Console sign-in", f"OIDC ({settings.oidc_issuer}) and users in {settings.users_path}")
        else:
            table.add_row("Console sign-in", f"users in {settings.users_path} (`vigil user list`)")
        chaos = self._chaos_token_file or "VIGIL_CHAOS_TOKEN"
        table.add_row("toyprod chaos", f"vigil chaos <fault> (token: {chaos})")
        if self._monitoring is not None:
            table.add_row("Prometheus alerts", self._prometheus_alerts_url)
            # Debian's Alertmanager has no web UI (its root page says so); its API answers everywhere.
            table.add_row("Alertmanager alerts (API)", f"{self._alertmanager_url}/api/v2/alerts")
            table.add_row("Monitoring configs", str(settings.state_dir / "monitoring"))
        else:
            table.add_row("Monitoring", self._monitoring_off)
        table.add_row("State dir", str(settings.state_dir))
        table.add_row("Logs", str(self.log_dir))
        self.console.print(table)
        self.console.print("[bold green]Vigil is up[/]. Ctrl-C stops it all.")

    async def supervise(self, stop: asyncio.Event) -> int:
        """Restart children that exit, with growing delays; give up after MAX_QUICK_FAILURES quick exits."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            with suppress(TimeoutError):
                async with asyncio.timeout(_POLL_SECONDS):
                    await stop.wait()
            now = loop.time()
            for child in self._children():
                process = child.process
                if child.restart_at is not None:
                    if now >= child.restart_at and not stop.is_set():
                        child.restart_at = None
                        process.start()
                        self.console.print(f"restarted {process.name} (pid {process.pid})")
                    continue
                if stop.is_set() or process.is_alive():
                    continue
                quick = process.uptime < QUICK_FAILURE_SECONDS
                child.quick_failures = child.quick_failures + 1 if quick else 0
                exited = f"{process.name} exited with code {process.returncode} after {process.uptime:.0f}s"
                if child.quick_failures >= MAX_QUICK_FAILURES:
                    message = (
                        f"{exited}, its {child.quick_failures}th exit in a row within {QUICK_FAILURE_SECONDS:g}s "
                        f"of starting; giving up and stopping Vigil; see {process.log_path}"
                    )
                    process.note(message)
                    self.console.print(f"[red]✗ {message}[/]")
                    return 1
                delay = _restart_delay(child.quick_failures)
                child.restart_at = now + delay
                process.note(f"{exited}; restarting in {delay:g}s")
                self.console.print(f"[yellow]! {exited}; restarting in {delay:g}s; see {process.log_path}[/]")
            if self._postgres_watch is not None and not stop.is_set() and not self._watch_postgres(now):
                return 1
        return 0

    def _watch_postgres(self, now: float) -> bool:
        """Restart the embedded PostgreSQL when it died, on the same data dir, with growing delays; the other
        processes keep running meanwhile (the API answers 503, workflows retry their store activities).
        False: it failed MAX_QUICK_FAILURES times in a row, within QUICK_FAILURE_SECONDS of each start."""
        watch = self._postgres_watch
        assert watch is not None
        server = watch.server
        if watch.restarting is not None:
            if not watch.restarting.done():
                return True
            failure = watch.restarting.exception()
            watch.restarting = None
            if failure is None:
                watch.restarts += 1
                watch.started_at = now
                self.console.print(f"restarted the embedded PostgreSQL (pid {server.pid}, restart {watch.restarts})")
                return True
            watch.quick_failures += 1
            return self._postgres_failed(watch, now, f"restarting the embedded PostgreSQL failed: {failure}")
        if watch.restart_at is not None:
            if now >= watch.restart_at:
                watch.restart_at = None
                watch.restarting = asyncio.create_task(asyncio.to_thread(server.restart))
            return True
        if server.is_running():
            return True
        uptime = now - watch.started_at
        watch.quick_failures = watch.quick_failures + 1 if uptime < QUICK_FAILURE_SECONDS else 0
        return self._postgres_failed(watch, now, f"the embedded PostgreSQL (pid {server.pid}) died after {uptime:.0f}s")

    def _postgres_failed(self, watch: _PostgresWatch, now: float, what: str) -> bool:
        """Schedule the next restart after `what` went wrong, or give up (False) after too many in a row."""
        if watch.quick_failures >= MAX_QUICK_FAILURES:
            self.console.print(
                f"[red]✗ {what}, {watch.quick_failures} times in a row; giving up and stopping Vigil; "
                f"see {watch.server.log_path}[/]"
            )
            return False
        delay = _restart_delay(watch.quick_failures)
        watch.restart_at = now + delay
        self.console.print(
            f"[yellow]! {what}; restarting it in {delay:g}s, the other processes keep running; "
            f"see {watch.server.log_path}[/]"
        )
        return True

    async def stop(self) -> None:
        """Stop children in reverse start order (each phase in parallel), then the embedded PostgreSQL."""
        for phase in reversed(self._phases):
            names = ", ".join(child.process.name for child in phase)
            self.console.print(f"stopping {names}")
            await asyncio.gather(*(asyncio.to_thread(child.process.stop, STOP_GRACE_SECONDS) for child in phase))
        self._phases.clear()
        if self._postgres_watch is not None and self._postgres_watch.restarting is not None:
            with suppress(Exception):  # let a restart in progress finish, whatever its outcome, then stop it
                await self._postgres_watch.restarting
        if self._postgres is not None:
            if self._postgres.stop():
                self.console.print("stopped the embedded PostgreSQL")
            else:
                self.console.print("the embedded PostgreSQL is left running: another process still uses it")
            self._postgres = None
        await self._http.aclose()


async def _run(stack: _Stack) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with suppress(asyncio.CancelledError):
                await starting
            stack.console.print("interrupted while starting; stopping what was started")
            return 0
        try:
            starting.result()
        except StackError as exc:
            stack.console.print(f"[red]✗ vigil up failed: {exc}[/]")
            return 1
        stack.print_summary()
        return await stack.supervise(stop)
    finally:
        await stack.stop()
        stack.console.print("Vigil stopped.")


def run_stack(settings: Settings) -> int:
    """Run the stack until Ctrl-C or SIGTERM (exit code 0) or a child keeps failing (1)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 200  # a log or a pipe: keep URLs and paths on one line
    return asyncio.run(_run(_Stack(settings, console)))
