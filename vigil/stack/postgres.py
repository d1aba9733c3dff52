"""The embedded PostgreSQL: a private `pgserver` instance with its data under the state dir.

pgserver starts `postgres` detached (in its own session, so a terminal Ctrl-C never reaches it) and counts the
processes using one data directory in `pgdata/.handle_pids.json`: each process adds its pid when it gets a
handle and removes it at exit (atexit) or on `stop()`; the last one out stops the server. Several Vigil
processes can therefore share one server, and a server started by `vigil up` stays up while a standalone
`vigil migrate` is still using it, and the other way round.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

from vigil.stack.processes import pid_alive

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
    warnings.simplefilter("ignore")
    from pgserver.postgres_server import PostgresServer, get_server
    from pgserver.utils import DiskList


class EmbeddedPostgresError(RuntimeError):
    pass


class EmbeddedPostgres:
    """A handle on the embedded server; `url` works with asyncpg and psql (unix socket, trust auth)."""

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        info = server.get_postmaster_info()
        self.pgdata: Path = server.pgdata
        self.log_path: Path = server.log
        self.pid: int = info.pid
        self.url = f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir), safe='/')}&port={info.port}"

    def is_running(self) -> bool:
        return pid_alive(self.pid)

    def stop(self) -> bool:
        """Give up this process's handle; True when the server was stopped (no other process still uses it)."""
        self._server.cleanup()
        return not self.is_running()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without their atexit cleanup (SIGKILL, crash) from pgserver's handle
    list; otherwise the server would never be stopped again, as the count would never reach zero."""
    handles = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        pids = handles.get()
        alive = [pid for pid in pids if pid_alive(pid)]
        if alive != pids:
            handles.put(alive)


def start_embedded_postgres(state_dir: Path) -> EmbeddedPostgres:
    """Start the server on `state_dir/pgdata` (initialised on first use), or attach to it when running."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (state_dir / "pgdata").resolve()
    if pgdata.exists():
        _forget_dead_handles(pgdata)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise EmbeddedPostgresError(
            f"could not start the embedded PostgreSQL on {pgdata}: {exc}; see {pgdata / 'log'}"
        ) from exc
    return EmbeddedPostgres(server)


def embedded_database_url(state_dir: Path) -> str:
    """URL of the embedded server for a standalone process, starting the server when it is not running.

    The handle is held until this process exits: nobody else's `stop()` can stop the server under it."""
    return start_embedded_postgres(state_dir).url
