"""A traffic generator: a realistic mix of shop requests at a steady rate."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from toyprod.dependencies import CATALOG

MIX: tuple[tuple[str, str, float], ...] = (
    ("GET", "/products", 0.6),
    ("POST", "/orders", 0.25),
    ("POST", "/checkout", 0.15),
)
PROMO_SHARE = 0.2


@dataclass
class TrafficStats:
    started: float = field(default_factory=time.monotonic)
    by_status: Counter[str] = field(default_factory=Counter)
    """Answers by status code, or by exception name when no answer came ("ConnectError")."""
    in_flight: int = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def done(self) -> int:
        return sum(self.by_status.values())

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(self.by_status.items())) or "none"
        return f"{self.done} requests in {self.elapsed:.0f}s ({codes})"


def random_cart() -> dict[str, Any]:
    items = [
        {"product_id": random.choice(CATALOG)[0], "quantity": random.randint(1, 3)} for _ in range(random.randint(1, 3))
    ]
    cart: dict[str, Any] = {"items": items}
    if random.random() < PROMO_SHARE:
        cart["promo"] = {"code": "SPRING10", "percent": 10}
    return cart


async def run_traffic(
    base_url: str, rps: float, duration_s: float, stats: TrafficStats, *, max_in_flight: int = 200
) -> None:
    """Send `rps` requests per second for `duration_s` seconds (0: until cancelled). Requests beyond
    `max_in_flight` unanswered ones are skipped and counted as "skipped", so a stalled shop cannot pile up
    unbounded work here."""
    methods, paths, weights = zip(*MIX, strict=True)
    interval = 1.0 / rps
    deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    pending: set[asyncio.Task[None]] = set()

    async def one(client: httpx.AsyncClient, method: str, path: str) -> None:
        stats.in_flight += 1
        try:
            body = random_cart() if method == "POST" else None
            response = await client.request(method, path, json=body)
            stats.by_status[str(response.status_code)] += 1
        except httpx.HTTPError as exc:
            stats.by_status[type(exc).__name__] += 1
        finally:
            stats.in_flight -= 1

    async with httpx.AsyncClient(base_url=base_url, timeout=15.0) as client:
        next_at = time.monotonic()
        while next_at < deadline:
            if len(pending) < max_in_flight:
                index = random.choices(range(len(MIX)), weights=weights)[0]
                task = asyncio.create_task(one(client, methods[index], paths[index]))
                pending.add(task)
                task.add_done_callback(pending.discard)
            else:
                stats.by_status["skipped"] += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)
