"""toyprod's data directory with a quota: the order journal, and the files disk-fill writes.

Writes past the quota fail with the same OSError (errno 28) a full filesystem raises. The quota is capped at
64 MiB, so disk-fill never writes more real bytes than that.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from toyprod.config import MAX_DISK_QUOTA, MIB
from toyprod.metrics import ToyMetrics

JOURNAL = "orders.journal"
JOURNAL_ROTATE_BYTES = MIB
FILL_DIR = "cache"


class DataDisk:
    def __init__(self, root: Path, quota_bytes: int, metrics: ToyMetrics) -> None:
        self.root = root
        self.quota = min(quota_bytes, MAX_DISK_QUOTA)
        self._metrics = metrics
        root.mkdir(parents=True, exist_ok=True)
        self.used = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
        self._publish()

    @property
    def ratio(self) -> float:
        return min(1.0, self.used / self.quota)

    def append_journal(self, line: bytes) -> None:
        path = self.root / JOURNAL
        self._reserve(len(line), path)
        with path.open("ab") as journal:
            journal.write(line)
        self._grew(len(line))
        if path.stat().st_size > JOURNAL_ROTATE_BYTES:
            rotated = path.with_name(JOURNAL + ".1")
            if rotated.exists():
                self._grew(-rotated.stat().st_size)
            path.replace(rotated)

    def fill(self, max_bytes: int) -> int:
        """Write one cache file of up to `max_bytes`, never past the quota; returns the bytes written."""
        size = min(max_bytes, self.quota - self.used)
        if size <= 0:
            return 0
        directory = self.root / FILL_DIR
        directory.mkdir(exist_ok=True)
        path = directory / f"blob-{len(os.listdir(directory)):05d}.bin"
        path.write_bytes(os.urandom(size))
        self._grew(size)
        return size

    def clear_fill(self) -> int:
        """Delete the files disk-fill wrote; returns the bytes freed."""
        directory = self.root / FILL_DIR
        if not directory.exists():
            return 0
        freed = sum(path.stat().st_size for path in directory.iterdir())
        shutil.rmtree(directory)
        self._grew(-freed)
        return freed

    def _reserve(self, size: int, path: Path) -> None:
        if self.used + size > self.quota:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def _grew(self, delta: int) -> None:
        self.used += delta
        self._publish()

    def _publish(self) -> None:
        self._metrics.disk_usage.set(self.ratio)
