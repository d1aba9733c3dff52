"""Files only their owner may read: written atomically (temp file + rename), 0600 from their first byte."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

PRIVATE_FILE_MODE = 0o600


def write_private_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: a reader sees the old file or the new one, never half of one.

    The temp file is created 0600 in the same folder (so the rename stays on one file system) and fsync-ed
    before the rename; the folder is fsync-ed after it so the rename survives a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write cycles on `path` across processes (`vigil user ...` run twice at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_or_create_secret(path: Path, make: int = 32) -> str:
    """The secret stored in `path` (tightened to 0600 if someone loosened it), or a new random one (`make`
    bytes, URL-safe) written there 0600 first."""
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        os.chmod(path, PRIVATE_FILE_MODE)
        return existing
    with exclusive_lock(path):
        try:
            existing = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        value = secrets.token_urlsafe(make)
        write_private_atomically(path, value + "\n")
        return value
