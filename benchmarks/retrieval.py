"""`python -m benchmarks.retrieval` (or `vigil bench retrieval`): knowledge-base retrieval speed, per engine.

- Embedding throughput: real runbook chunks (the repo's `runbooks/`) through the embedding model, chunks/s, and
  the latency of embedding one query.
- Query latency, p50 and p95, at each collection size, for two engines on temporary paths (the benchmark never
  writes to a configured `QDRANT_URL` server):
  - `edge`: Qdrant Edge in-process, the embedded default (`vigil/knowledge/edge.py`), at `--sizes`;
  - `local`: qdrant-client local mode, the previous default, as the baseline, at `--baseline-sizes` (smaller by
    default: it scores sparse vectors in Python, point by point, about a second per 25k chunks per query on a
    small CPU, and indexes slowly).
  Two latencies are timed: `query` is a hybrid search as the workers run it (`KnowledgeBase.search`, k=5: query
  embedding, sparse vector, one Query API request with dense and sparse prefetches fused by RRF, dedupe), and
  `engine` is the store's request alone, with the query's vectors computed beforehand.

The collections are synthesised from the real runbook sections: chunk i is section i mod n with a service name,
namespace and numbers varied, so its sparse vector is its own. Embedding 50k chunks on a small CPU takes longer
than a benchmark run should, so the dense vector of a synthetic chunk is its section's real embedding plus a
little Gaussian noise (cosine about 0.95 to the original), written with `KnowledgeBase.write_chunks`; the queries
are embedded for real, in the timed path of `query`. Queries are the alerts of `eval/retrieval/alerts.jsonl`
through `query_for_alert` (runbook titles if that file is missing). Every figure is the median over `--repeats`
runs; the machine (CPU, cores, load average) is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from vigil.knowledge import sparse
from vigil.knowledge.base import CANDIDATES_PER_HIT, SHIPPED_RUNBOOKS, KnowledgeBase
from vigil.knowledge.base import INSTALL_ROOT as REPO
from vigil.knowledge.chunking import Chunk, chunk_file
from vigil.knowledge.client_store import ClientStore
from vigil.knowledge.edge import EdgeStore
from vigil.knowledge.embedder import Embedder
from vigil.knowledge.models import RUNBOOKS
from vigil.knowledge.query import query_for_alert
from vigil.knowledge.store import VectorQuery, VectorStore
from vigil.settings import Settings, get_settings

Engine = Literal["edge", "local"]
ENGINES: dict[Engine, Callable[[Path], VectorStore]] = {"edge": EdgeStore, "local": ClientStore.local}
ENGINE_NAMES: dict[Engine, str] = {"edge": "Qdrant Edge", "local": "local mode"}
K = 5

ALERTS = REPO / "eval" / "retrieval" / "alerts.jsonl"
NOISE = 0.012  # per-dimension sigma; with 384 dimensions, cosine to the original is about 0.95
DOCUMENT_SIZE = 500  # synthetic chunks per synthetic document (one delete + upsert each)
SERVICES = ("checkout", "payments", "orders", "search", "auth", "billing", "catalog", "gateway", "ledger", "mailer")
NAMESPACES = ("prod", "staging", "payments", "platform", "data")
#: Baseline (local mode) sizes above this time `--queries-large` queries a run, not `--queries`.
LARGE = 5_000


@dataclass
class SizeResult:
    engine: Engine
    chunks: int
    queries: int
    index_seconds: float
    p50_ms: float
    p95_ms: float
    engine_p50_ms: float
    engine_p95_ms: float


@dataclass
class Report:
    model: str
    device: str
    sample_chunks: int
    chunks_per_s: float
    query_embed_ms: float
    sizes: list[SizeResult]


def machine() -> str:
    """CPU model, cores and load average: the figures depend on them (and on a shared box, on its neighbours)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, load average {load_average()}"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def real_chunks(folder: Path) -> list[Chunk]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".md", ".markdown", ".txt"})
    return [chunk for path in files for chunk in chunk_file(path, path.read_text(encoding="utf-8"))]


def bench_queries(count: int, chunks: Sequence[Chunk]) -> list[str]:
    if ALERTS.exists():
        rows = [json.loads(line) for line in ALERTS.read_text(encoding="utf-8").splitlines() if line.strip()]
        queries = [query_for_alert(r["alert"].get("labels", {}), r["alert"].get("annotations", {})) for r in rows]
    else:
        queries = sorted({chunk.title for chunk in chunks})
    return [queries[i % len(queries)] for i in range(count)]


def vary(chunk: Chunk, i: int, rng: random.Random) -> Chunk:
    """Section `chunk` as if written for another service: its own words, numbers and therefore sparse vector."""
    service, namespace = SERVICES[i % len(SERVICES)], NAMESPACES[(i // len(SERVICES)) % len(NAMESPACES)]
    body = chunk.body.replace("<namespace>", namespace).replace("<name>", service).replace("<pod>", f"{service}-0")
    note = f"Applies to {service}-{i % 97} in {namespace}; threshold {rng.randint(5, 95)}%, ticket OPS-{i}."
    return Chunk(f"{chunk.title} ({service})", chunk.headings, f"{body}\n\n{note}")


def noisy(vector: Sequence[float], rng: np.random.Generator) -> list[float]:
    moved = np.asarray(vector, dtype=np.float32) + rng.normal(0.0, NOISE, len(vector)).astype(np.float32)
    result: list[float] = (moved / np.linalg.norm(moved)).tolist()
    return result


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(
    sizes: Sequence[int],
    baseline_sizes: Sequence[int],
    queries: int,
    queries_large: int,
    repeats: int,
    sample: int,
    progress: Progress,
) -> Report:
    settings = get_settings()
    embedder = Embedder(settings.embedding_model, settings.embedding_device)
    chunks = real_chunks(SHIPPED_RUNBOOKS)
    if not chunks:
        raise SystemExit(f"no runbooks under {SHIPPED_RUNBOOKS}")
    step = max(1, len(chunks) // sample)
    sampled = chunks[::step][:sample]
    texts = [chunk.text for chunk in sampled]

    loading = progress.add_task("loading the embedding model", total=1)
    embedder.encode(["warm up"])
    progress.update(loading, completed=1)

    task = progress.add_task(f"embedding {len(texts)} runbook chunks", total=repeats)
    rates: list[float] = []
    vectors: list[list[float]] = []
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = embedder.encode(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
        progress.advance(task)
    query_texts = bench_queries(queries, chunks)
    single: list[float] = []
    task = progress.add_task("embedding single queries", total=len(query_texts))
    for text in query_texts:
        start = time.perf_counter()
        embedder.encode([text])
        single.append(time.perf_counter() - start)
        progress.advance(task)

    spread = query_texts[:: max(1, len(query_texts) // max(queries_large, 1))][:queries_large]
    plan: list[tuple[Engine, int, Sequence[str]]] = [("edge", size, query_texts) for size in sizes]
    plan += [("local", size, query_texts if size <= LARGE else spread) for size in baseline_sizes]
    results = [
        _bench_size(engine, size, sampled, vectors, timed_queries, repeats, embedder, settings, progress)
        for engine, size, timed_queries in plan
    ]
    return Report(
        model=embedder.model_name,
        device=embedder.device,
        sample_chunks=len(texts),
        chunks_per_s=statistics.median(rates),
        query_embed_ms=statistics.median(single) * 1000,
        sizes=results,
    )


def _bench_size(
    engine: Engine,
    size: int,
    sampled: Sequence[Chunk],
    vectors: Sequence[list[float]],
    queries: Sequence[str],
    repeats: int,
    embedder: Embedder,
    settings: Settings,
    progress: Progress,
) -> SizeResult:
    rng, noise = random.Random(size), np.random.default_rng(size)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        local = settings.model_copy(update={"state_dir": Path(tmp), "qdrant_url": None})
        store = ENGINES[engine](Path(tmp) / "qdrant")
        with KnowledgeBase(local, embedder, store) as kb:
            task: TaskID = progress.add_task(f"{engine}: indexing {size:,} chunks (precomputed vectors)", total=size)
            start = time.perf_counter()
            for first in range(0, size, DOCUMENT_SIZE):
                ids = range(first, min(first + DOCUMENT_SIZE, size))
                batch = [vary(sampled[i % len(sampled)], i, rng) for i in ids]
                dense = [noisy(vectors[i % len(vectors)], noise) for i in ids]
                kb.write_chunks(f"synthetic/{first}", f"synthetic/{first}.md", batch, vectors=dense)
                progress.advance(task, len(batch))
            index_seconds = time.perf_counter() - start
            assert kb.count(RUNBOOKS) == size
            prepared = [
                VectorQuery(K * CANDIDATES_PER_HIT, dense=vector, sparse=sparse.query_vector(query))
                for query, vector in zip(queries, embedder.encode(queries), strict=True)
            ]
            timed: dict[str, list[float]] = {"p50": [], "p95": [], "engine_p50": [], "engine_p95": []}
            task = progress.add_task(f"{engine}: querying {size:,} chunks", total=repeats * len(queries))
            for _ in range(repeats):
                latencies, engine_latencies = [], []
                for query, request in zip(queries, prepared, strict=True):
                    start = time.perf_counter()
                    kb.search(query, k=K)
                    latencies.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    store.query_batch(RUNBOOKS, [request])
                    engine_latencies.append(time.perf_counter() - start)
                    progress.advance(task)
                for key, values in (("", latencies), ("engine_", engine_latencies)):
                    timed[f"{key}p50"].append(_percentile(values, 50))
                    timed[f"{key}p95"].append(_percentile(values, 95))
    median_ms = {key: statistics.median(values) * 1000 for key, values in timed.items()}
    return SizeResult(
        engine,
        size,
        len(queries),
        index_seconds,
        median_ms["p50"],
        median_ms["p95"],
        median_ms["engine_p50"],
        median_ms["engine_p95"],
    )


def render(report: Report, repeats: int, where: str, console: Console) -> None:
    console.print(
        f"machine: {where}\nmodel {report.model} on {report.device}; embedding throughput "
        f"{report.chunks_per_s:,.1f} chunks/s ({report.sample_chunks} real runbook chunks, batch 64); one query "
        f"embedded in {report.query_embed_ms:.1f} ms (p50); medians over {repeats} runs"
    )
    table = Table(
        title=f"Hybrid search latency, k={K}: query = as the workers search (embedding included); engine = the "
        "store's request alone"
    )
    columns = ("engine", "chunks", "queries a run", "index s", "query p50 ms", "query p95 ms", "engine p50 ms")
    for column in (*columns, "engine p95 ms"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for size in report.sizes:
        table.add_row(
            ENGINE_NAMES[size.engine],
            f"{size.chunks:,}",
            str(size.queries),
            f"{size.index_seconds:.1f}",
            f"{size.p50_ms:.1f}",
            f"{size.p95_ms:.1f}",
            f"{size.engine_p50_ms:.2f}",
            f"{size.engine_p95_ms:.2f}",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,50000", help="comma-separated collection sizes, Qdrant Edge")
    parser.add_argument(
        "--baseline-sizes", default="1000,10000", help="comma-separated sizes, qdrant-client local mode ('' for none)"
    )
    parser.add_argument("--queries", type=int, default=50, help="timed queries per size and run")
    parser.add_argument(
        "--queries-large", type=int, default=10, help=f"timed queries per run, local mode above {LARGE:,} chunks"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs; figures are medians")
    parser.add_argument("--sample", type=int, default=64, help="real chunks embedded for the throughput figure")
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    baseline_sizes = [int(part) for part in args.baseline_sizes.split(",") if part.strip()]
    console = Console()
    where = machine()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress, warnings.catch_warnings():
        # Qdrant warns above 20k points in local mode: the point of the large size is to show that cost.
        warnings.filterwarnings("ignore", message="Local mode is not recommended", category=UserWarning)
        report = run(sizes, baseline_sizes, args.queries, args.queries_large, args.repeats, args.sample, progress)
    render(report, args.repeats, f"{where} at the start, {load_average()} at the end", console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
