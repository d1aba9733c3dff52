"""`ManagedProcess`: a child with its own log file and process group that dies with its supervisor."""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path

_PR_SET_PDEATHSIG = 1
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path, *, traverse_gid: int | None = None) -> None:
    """Create `path` (and missing parents) readable by its owner only, tightening it when it exists.

    `traverse_gid`: a group whose members may pass through `path` but not list it (mode 0710), for a server
    that runs as another user on data below `path` (the embedded PostgreSQL when Vigil runs as root)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if traverse_gid is None:
        path.chmod(PRIVATE_DIR_MODE)
    else:
        os.chown(path, -1, traverse_gid)
        path.chmod(PRIVATE_DIR_MODE | stat.S_IXGRP)


def _private_opener(path: str, flags: int) -> int:
    """`open(..., opener=)` creating the file 0600 and tightening an existing one: logs may hold secrets."""
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


def pid_alive(pid: int) -> bool:
    """Whether `pid` is running; a zombie (exited, not yet reaped by anyone) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform != "linux":
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # Field 3 is the state; field 2 (the command name) is in parentheses and may itself contain ") ".
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel to SIGKILL the child when its parent dies, even by SIGKILL (Linux)."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class ManagedProcess:
    """One child command; stdout and stderr are appended to `log_path` (mode 0600).

    The child leads its own process group. A terminal Ctrl-C signals the whole foreground group, so children
    outside it never see that SIGINT and the supervisor alone decides the order of shutdown; `stop` signals
    the child's whole group, so helpers it spawned go with it.

    Start children from a thread that lives as long as the supervisor (the main thread): the kernel sends
    PR_SET_PDEATHSIG when the *thread* that forked the child exits, not only when the process does.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit code of the last run; None while running or before the first start."""
        return self._popen.returncode if self._popen is not None else None

    @property
    def uptime(self) -> float:
        """Seconds since the last start (still counting after the child exited)."""
        return time.monotonic() - self._started_at

    def start(self) -> None:
        if self.is_alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.note(f"starting {shlex.join(self.argv)}")
        with open(self.log_path, "ab", opener=_private_opener) as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                process_group=0,
                preexec_fn=_die_with_parent(),
            )
        self._started_at = time.monotonic()

    def is_alive(self) -> bool:
        if self._popen is None:
            return False
        if self._popen.returncode is None and self._popen.poll() is not None:
            # Reaped just now: clear out whatever it left in its group before its pid can be reused.
            self._signal_group(signal.SIGKILL)
        return self._popen.returncode is None

    def stop(self, grace: float) -> int | None:
        """SIGTERM the child's group, SIGKILL it after `grace` seconds; the exit code (None: never started)."""
        if self._popen is None:
            return None
        if self.is_alive():
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.note(f"still running {grace:g}s after SIGTERM, sending SIGKILL")
                self._signal_group(signal.SIGKILL)
                self._popen.wait()
            self._signal_group(signal.SIGKILL)
            self.note(f"stopped with exit code {self._popen.returncode}")
        return self._popen.returncode

    def note(self, message: str) -> None:
        """Append a supervisor line to the child's log, so that the log also tells of starts and stops."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        with open(self.log_path, "a", encoding="utf-8", opener=_private_opener) as log:
            log.write(f"--- {stamp} vigil up: {message}\n")

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        with suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)
