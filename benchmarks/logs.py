"""`python -m benchmarks.logs`: log-line insert throughput of `Store.insert_logs` (COPY) against a baseline of
plain `executemany` INSERTs of the same rows, in the same process and database.

Uses DATABASE_URL when set, else a private embedded PostgreSQL in a temporary folder. Prints lines/s for N lines
(default 100,000) in batches of the API's default line cap, median of 3 runs each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vigil.models import LogRecord
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import Store, migrate_database

_INSERT = (
    "INSERT INTO log_lines (ts, service, level, message, labels, trace_id, request_id, received_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)


def make_records(n: int, service: str) -> list[LogRecord]:
    """Lines shaped like toyprod's: a 100-character message, a level, three labels, a trace id."""
    start = datetime.now(UTC) - timedelta(hours=1)
    levels = ("info", "info", "info", "warning", "error")
    return [
        LogRecord(
            ts=start + timedelta(milliseconds=i),
            service=service,
            message=f"GET /api/orders/{i} 200 in {i % 997} ms user=u{i % 311} cart=c{i % 53} " + "x" * 40,
            level=levels[i % len(levels)],
            labels={"pod": f"pod-{i % 7}", "route": "/api/orders", "status": "200"},
            trace_id=f"{i:032x}",
        )
        for i in range(n)
    ]


@asynccontextmanager
async def throwaway_database(prefix: str = "vigil-bench-") -> AsyncIterator[str]:
    """DATABASE_URL when set, else a private embedded PostgreSQL in a temporary folder, removed afterwards."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        server = start_embedded_postgres(Path(folder))
        try:
            yield server.url
        finally:
            server.stop()


async def _timed(run: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started


async def bench(n: int, batch: int, repeats: int) -> dict[str, float]:
    """Median lines/s of each method; the table is emptied of the benchmark's rows between runs."""
    async with throwaway_database() as url:
        await migrate_database(url)
        async with await Store.open(url) as store:
            pool = store._pool  # the baseline uses the same pool, the same connection settings
            service = f"bench-{uuid.uuid4().hex[:8]}"
            records = make_records(n, service)
            batches = [records[i : i + batch] for i in range(0, n, batch)]

            async def copy() -> None:
                for chunk in batches:
                    await store.insert_logs(chunk, received_at=datetime.now(UTC))

            async def executemany() -> None:
                for chunk in batches:
                    received = datetime.now(UTC)
                    await pool.executemany(
                        _INSERT,
                        [
                            (r.ts, r.service, r.level, r.message, r.labels, r.trace_id, r.request_id, received)
                            for r in chunk
                        ],
                    )

            results: dict[str, float] = {}
            for name, method in (("executemany (baseline)", executemany), ("COPY (Store.insert_logs)", copy)):
                rates = []
                for _ in range(repeats):
                    rates.append(n / await _timed(method))
                    await pool.execute("DELETE FROM log_lines WHERE service = $1", service)
                results[name] = statistics.median(rates)
            return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="lines per run")
    parser.add_argument("--batch", type=int, default=50_000, help="lines per insert call (one request's cap)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(bench(args.n, args.batch, args.repeats))
    baseline = results["executemany (baseline)"]
    print(f"{args.n} lines, batches of {args.batch}, median of {args.repeats} runs")
    for name, rate in results.items():
        print(f"  {name:<26} {rate:>10,.0f} lines/s   x{rate / baseline:.1f}")


if __name__ == "__main__":
    main()
