"""The runtime monitor every production service has in some form: it probes dependencies and logs when the
process runs hot, memory keeps growing, the data disk fills or the certificate nears expiry.

Chaos faults do not log their own symptoms; this monitor observes them, as it would observe a real fault.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from datetime import UTC, datetime

from toyprod.config import MIB
from toyprod.shop import CERT_SUBJECT, Shop

LOGGER = "toyprod.runtime"
CPU_WARN_CORES = 0.75
MEMORY_WINDOW_S = 30.0
MEMORY_GROWTH_WARN = 32 * MIB
DISK_WARN_RATIO = 0.9
CERT_WARN_S = 14 * 86_400
CERT_REPEAT_S = 60.0


def resident_bytes() -> int | None:
    """Resident set size from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Watchdog:
    def __init__(self, shop: Shop) -> None:
        self._shop = shop
        self._interval = shop.config.watchdog_interval_s
        self._rss: deque[tuple[float, int]] = deque()
        self._cert_logged: tuple[float, float] | None = None
        """(expiry it was logged for, monotonic time of the log)."""

    async def run(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        while True:
            await asyncio.sleep(self._interval)
            now, now_cpu = time.monotonic(), time.process_time()
            lag = max(0.0, now - wall - self._interval)
            self.check(cores=(now_cpu - cpu) / max(now - wall, 1e-6), lag_s=lag, now=now)
            wall, cpu = now, now_cpu

    def check(self, *, cores: float, lag_s: float, now: float) -> None:
        shop, log = self._shop, self._shop.log
        shop.db.ping()
        shop.payments.ping()
        if cores >= CPU_WARN_CORES:
            log.warning(
                LOGGER,
                f"high CPU usage: process used {cores:.2f} cores over the last {self._interval:g}s; "
                f"event loop lag {lag_s * 1000:.0f} ms",
            )
        self._check_memory(now)
        if shop.disk.ratio >= DISK_WARN_RATIO:
            log.warning(
                "toyprod.disk",
                f"disk usage of {shop.disk.root} at {shop.disk.ratio:.0%} of its {shop.disk.quota // MIB} MiB quota",
            )
        self._check_certificate(now)

    def _check_memory(self, now: float) -> None:
        rss = resident_bytes()
        if rss is None:
            return
        self._rss.append((now, rss))
        while self._rss[0][0] < now - MEMORY_WINDOW_S:
            self._rss.popleft()
        growth = rss - min(sample for _, sample in self._rss)
        if growth >= MEMORY_GROWTH_WARN:
            self._shop.log.warning(
                LOGGER,
                f"memory usage growing: rss {rss // MIB} MiB, +{growth // MIB} MiB in the last "
                f"{now - self._rss[0][0]:.0f}s",
            )

    def _check_certificate(self, now: float) -> None:
        expires_at = self._shop.cert_expires_at
        remaining = expires_at - time.time()
        if remaining > CERT_WARN_S:
            return
        if self._cert_logged and self._cert_logged[0] == expires_at and now - self._cert_logged[1] < CERT_REPEAT_S:
            return
        self._cert_logged = (expires_at, now)
        not_after = datetime.fromtimestamp(expires_at, UTC).strftime("%b %d %H:%M:%S %Y GMT")
        if remaining > 0:
            self._shop.log.warning(
                "toyprod.tls",
                f"TLS certificate {CERT_SUBJECT} expires in {remaining / 86_400:.1f} days (notAfter={not_after})",
            )
        else:
            self._shop.log.error(
                "toyprod.tls",
                f"TLS certificate {CERT_SUBJECT} expired {-remaining / 86_400:.1f} days ago (notAfter={not_after}); "
                "clients fail the TLS handshake",
            )
