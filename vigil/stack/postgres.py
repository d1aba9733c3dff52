"""The embedded PostgreSQL: a private `pgserver` instance with its data under the state dir.

pgserver starts `postgres` detached (in its own session, so a terminal Ctrl-C never reaches it) and counts the
processes using one data directory in `pgdata/.handle_pids.json`: each process adds its pid when it gets a
handle and removes it at exit (atexit) or on `stop()`; the last one out stops the server. Several Vigil
processes can therefore share one server, and a server started by `vigil up` stays up while a standalone
`vigil migrate` is still using it, and the other way round.

Should the server die, `restart` starts it again on the same data dir, with the same socket directory and
port: the URL the other processes were given stays valid, and their connection pools reconnect.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

import psutil

from vigil.stack.processes import pid_alive

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
    warnings.simplefilter("ignore")
    from pgserver.postgres_server import PostgresServer, get_server
    from pgserver.utils import DiskList, PostmasterInfo


_IPC_RMID = 0


class EmbeddedPostgresError(RuntimeError):
    pass


def _attached_processes(shmid: int) -> int:
    """How many processes are attached to the System V shared memory segment `shmid` (0: none, or gone)."""
    for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
        fields = line.split()  # key shmid perms size cpid lpid nattch ...
        if int(fields[1]) == shmid:
            return int(fields[6])
    return 0


def _clear_dead_postmaster(pgdata: Path) -> None:
    """Remove the lock files and shared memory segment of a postmaster that died (SIGKILL, the OOM killer), once
    none of its backends is left (Linux).

    PostgreSQL refuses to start while the dead postmaster is a zombie, which still has a pid (for good in a
    container whose init does not reap), and rightly refuses while its orphaned backends still use the data
    dir: they stay attached to its segment for the moments until they notice that the postmaster is gone."""
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or pid_alive(info.pid) or sys.platform != "linux":
        return
    shmid: int | None = info.shmget_id
    if shmid is not None:
        if attached := _attached_processes(shmid):
            raise EmbeddedPostgresError(
                f"{attached} backend(s) of the dead PostgreSQL server (pid {info.pid}) still hold its shared memory"
            )
        ctypes.CDLL(None, use_errno=True).shmctl(shmid, _IPC_RMID, None)  # gone already: nothing to do
    if info.socket_dir is not None:
        (info.socket_dir / f".s.PGSQL.{info.port}.lock").unlink(missing_ok=True)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


class EmbeddedPostgres:
    """A handle on the embedded server; `url` works with asyncpg and psql (unix socket, trust auth)."""

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        info = server.get_postmaster_info()
        self.pgdata: Path = server.pgdata
        self.log_path: Path = server.log
        self.pid: int = info.pid
        self.url = f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir), safe='/')}&port={info.port}"

    @property
    def server_gid(self) -> int | None:
        """The group the server runs with when it runs as another user than this process, None otherwise.

        As root, pgserver runs it as its `pgserver` user (PostgreSQL refuses to run as root) but keeps this
        process's group: that group must be able to pass through the directories above the data dir."""
        process = psutil.Process(self.pid)
        if process.uids().effective == os.geteuid():
            return None
        gid: int = process.gids().effective
        return gid

    def is_running(self) -> bool:
        return pid_alive(self.pid)

    def restart(self) -> None:
        """Start the server again after it died; blocks for up to pg_ctl's 10 s (run it in a thread).

        Fails while the dead server's backends are still running (they exit within moments of noticing that the
        postmaster is gone): try again later."""
        try:
            with PostgresServer._lock:
                _clear_dead_postmaster(self.pgdata)
                self._server.ensure_postgres_running()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise EmbeddedPostgresError(
                f"could not restart the embedded PostgreSQL on {self.pgdata}: {exc}; see {self.log_path}"
            ) from exc
        self.pid = self._server.get_postmaster_info().pid

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
