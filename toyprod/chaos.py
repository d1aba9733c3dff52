"""Chaos faults. Each one changes what the shop runs on (its dependencies, its code version, its process
resources) and leaves the rest to real code: the errors, metrics and log lines that follow are the ones a
real fault of that kind produces.

Chaos actions themselves are logged on stdout only, never shipped to Vigil: Vigil must find the fault from
its symptoms, not from a line announcing it.

The admin API's fixes (`toyprod/admin.py`) change the same inputs back the way an operator would; `active`
lists the faults still in effect, so a fix that ends one (a rollback, a restart) takes it off the list, and
one that only routes around it (a failover, a bigger pool) leaves it there.
"""

from __future__ import annotations

import asyncio
import gc
import mmap
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from toyprod.config import MIB
from toyprod.dependencies import PaymentMode
from toyprod.deploys import DeployAnnouncer
from toyprod.shop import CERT_LIFETIME_S, Build, Shop

LEAK_CAP = 512 * MIB
TICK_S = 0.25
BAD_VERSION = "2.0.1-bad"
PROCESS_FAULTS = ("memory-leak", "cpu-burn", "db-pool-exhaustion")
"""Faults that live in the process, so a restart ends them. disk-fill's writer dies too, its files stay."""


class Chaos:
    def __init__(self, shop: Shop, announcer: DeployAnnouncer | None) -> None:
        self.shop = shop
        self._announcer = announcer
        self.active: dict[str, dict[str, object]] = {}
        self.latency_s = 0.0
        self.latency_route: str | None = None
        self._leaked: list[mmap.mmap] = []
        self._burn_stop: threading.Event | None = None
        self._burn_thread: threading.Thread | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def leaked_bytes(self) -> int:
        return sum(map(len, self._leaked))

    def latency(self, ms: float, route: str | None) -> None:
        self.latency_s, self.latency_route = ms / 1000, route
        self._enable("latency", ms=ms, route=route)

    def errors(self, rate: float) -> None:
        self.shop.db.corrupt_rate = rate
        self._enable("errors", rate=rate)

    def memory_leak(self, mb_per_s: float) -> None:
        self._restart("memory-leak", self._leak(mb_per_s))
        self._enable("memory-leak", mb_per_s=mb_per_s, cap_mb=LEAK_CAP // MIB)

    def cpu_burn(self, fraction: float) -> None:
        self._stop_burn()
        self._burn_stop = threading.Event()
        self._burn_thread = threading.Thread(
            target=_burn, args=(fraction, self._burn_stop), name="toyprod-cpu-burn", daemon=True
        )
        self._burn_thread.start()
        self._enable("cpu-burn", fraction=fraction)

    def db_down(self) -> None:
        self.shop.db.down = True
        self._enable("db-down")

    def db_pool_exhaustion(self) -> None:
        self._restart("db-pool-exhaustion", self.shop.db.hold_all())
        self._enable("db-pool-exhaustion")

    def payments_failing(self) -> None:
        self.shop.payments.mode = PaymentMode.FAILING
        self.active.pop("payments-ratelimit", None)
        self._enable("payments-failing")

    def payments_ratelimit(self) -> None:
        self.shop.payments.mode = PaymentMode.RATE_LIMITED
        self.active.pop("payments-failing", None)
        self._enable("payments-ratelimit")

    async def bad_deploy(self) -> bool:
        """Roll out the bad version; True when Vigil accepted the deploy event."""
        build = Build(version=BAD_VERSION, commit=uuid.uuid4().hex[:12])
        self.shop.deploy(build)
        self._enable("bad-deploy", version=build.version, commit=build.commit)
        return await self._announce(build, "release 2.0.1: promo codes at checkout (pricing v2)")

    def disk_fill(self, mb_per_s: float) -> None:
        self._restart("disk-fill", self._fill(mb_per_s))
        self._enable("disk-fill", mb_per_s=mb_per_s, quota_mb=self.shop.disk.quota / MIB)

    def cert_expiry(self, days: float) -> None:
        self.shop.set_cert_expiry(time.time() + days * 86_400)
        self._enable("cert-expiry", days=days)

    async def reset(self) -> None:
        """Heal everything; a bad deploy still running is rolled back, and the rollback announced."""
        self.stop()
        shop = self.shop
        self.latency_s, self.latency_route = 0.0, None
        shop.db.corrupt_rate = 0.0
        shop.db.down = False
        shop.payments.mode = PaymentMode.HEALTHY
        shop.disk.clear_fill()
        shop.set_cert_expiry(time.time() + CERT_LIFETIME_S)
        self.active.clear()
        shop.log.info("toyprod.chaos", "chaos reset: all faults cleared", ship=False)
        if shop.build.version == BAD_VERSION and (build := shop.rollback()) is not None:
            await self._announce(build, f"rollback of {BAD_VERSION} to {build.version}")

    def restart_process(self) -> list[str]:
        """End what a process restart ends: background work, leaked memory, the CPU burn and the connections
        stuck transactions hold. Returns what there was to end; empty: a restart would change nothing."""
        ended: list[str] = []
        if self.leaked_bytes:
            ended.append(f"freed {self.leaked_bytes / MIB:.0f} MiB of leaked memory")
        if self._burn_thread is not None:
            ended.append("stopped the CPU-burning thread")
        if self.shop.db.held:
            ended.append(f"released {self.shop.db.held} DB connections held by stuck transactions")
        if running := sorted(name for name, task in self._tasks.items() if not task.done()):
            ended.append(f"stopped background tasks: {', '.join(running)}")
        if ended:
            self.stop()
            self.healed(*PROCESS_FAULTS)
        return ended

    def healed(self, *faults: str) -> None:
        """A fix ended these faults: they leave `active`, unless their background work still runs (a disk
        writer still writing keeps its fault going)."""
        for fault in faults:
            task = self._tasks.get(fault)
            if task is None or task.done():
                self.active.pop(fault, None)

    def stop(self) -> None:
        """Stop what runs in the background and give back what it holds (also on shutdown)."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self.shop.db.release_held()
        self._stop_burn()
        for mapping in self._leaked:
            mapping.close()
        self._leaked.clear()
        gc.collect()

    def _enable(self, fault: str, **params: object) -> None:
        self.active[fault] = params
        self.shop.log.warning("toyprod.chaos", f"chaos fault enabled: {fault} {params or ''}".rstrip(), ship=False)

    def _restart(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        previous = self._tasks.pop(name, None)
        if previous is not None:
            previous.cancel()
        self._tasks[name] = asyncio.create_task(work, name=f"toyprod-chaos-{name}")

    def _stop_burn(self) -> None:
        if self._burn_stop is not None and self._burn_thread is not None:
            self._burn_stop.set()
            self._burn_thread.join()
        self._burn_stop = self._burn_thread = None

    async def _announce(self, build: Build, description: str) -> bool:
        if self._announcer is None:
            return False
        return await self._announcer.announce(build, author="ci-bot", description=description)

    async def _leak(self, mb_per_s: float) -> None:
        """Retain memory as an unbounded cache would, up to LEAK_CAP."""
        while (room := LEAK_CAP - self.leaked_bytes) > 0:
            self._leaked.append(_resident_block(min(room, max(1, int(mb_per_s * MIB * TICK_S)))))
            await asyncio.sleep(TICK_S)
        self.shop.metrics.errors.labels("memory").inc()
        try:
            raise MemoryError(f"cannot grow the session cache past {LEAK_CAP // MIB} MiB")
        except MemoryError as exc:
            self.shop.log.error("toyprod.cache", "session cache allocation failed", exc=exc)

    async def _fill(self, mb_per_s: float) -> None:
        disk = self.shop.disk
        chunk = max(1, int(mb_per_s * MIB * TICK_S))
        while disk.fill(chunk):
            if disk.ratio >= 1:
                return  # full: the writer is done at once, not one tick later
            await asyncio.sleep(TICK_S)


def _resident_block(size: int) -> mmap.mmap:
    """`size` bytes of anonymous memory, every page written so it counts in the resident set.

    A mapping of its own, not a `bytes` from malloc: glibc raises its mmap threshold after the first large
    free, so a second leak would come from the heap, and freeing it (reset, restart) would not give the
    memory back to the OS: resident memory, and the alerts on it, would stay up. Closing a mapping unmaps it.
    """
    block = mmap.mmap(-1, size)
    chunk = b"\x5a" * min(size, MIB)
    while block.tell() < size:
        block.write(chunk[: size - block.tell()])
    return block


def _burn(fraction: float, stop: threading.Event) -> None:
    """Use `fraction` of a core until stopped: in every 100 ms, busy-loop until this thread has had that share
    of CPU time (not of wall time: on a busy host a preempted loop would burn less than asked), or the 100 ms
    are over; then sleep out the rest."""
    period = 0.1
    while not stop.is_set():
        cpu_until = time.thread_time() + period * fraction
        period_end = time.perf_counter() + period
        while time.thread_time() < cpu_until and time.perf_counter() < period_end:
            pass
        stop.wait(max(0.0, period_end - time.perf_counter()))
