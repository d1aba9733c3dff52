"""`python -m benchmarks.retrieval` (or `vigil bench retrieval`): knowledge-base retrieval speed.

- Embedding throughput: real runbook chunks (the repo's `runbooks/`) through the embedding model, chunks/s, and
  the latency of embedding one query.
- Query latency, p50 and p95, of a hybrid search as the workers run it (`KnowledgeBase.search`, k=5: query
  embedding, sparse vector, one Query API request with dense and sparse prefetches fused by RRF, dedupe), in
  collections of each `--sizes` chunks, in Qdrant local mode on a temporary path (the embedded default; the
  benchmark never writes to a configured `QDRANT_URL` server).

The collections are synthesised from the real runbook sections: chunk i is section i mod n with a service name,
namespace and numbers varied, so its sparse vector is its own. Embedding 50k chunks on a small CPU takes longer
than the default run should, so the dense vector of a synthetic chunk is its section's real embedding plus a
little Gaussian noise (cosine about 0.95 to the original), written with `KnowledgeBase.write_chunks`; the queries
are embedded for real, in the timed path. Queries are the alerts of `eval/retrieval/alerts.jsonl` through
`query_for_alert` (runbook titles if that file is missing). Every figure is the median over `--repeats` runs.

Local mode scores sparse vectors in Python, point by point, so a query costs time linear in the collection (about
a second per 25k chunks on a small CPU): sizes above `LARGE` time `--queries-large` queries a run, not `--queries`.
Beyond a few thousand chunks, a Qdrant server (`QDRANT_URL`) is the way to run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from vigil.knowledge.base import INSTALL_ROOT as REPO
from vigil.knowledge.base import SHIPPED_RUNBOOKS, KnowledgeBase
from vigil.knowledge.chunking import Chunk, chunk_file
from vigil.knowledge.embedder import Embedder
from vigil.knowledge.query import query_for_alert
from vigil.settings import Settings, get_settings

ALERTS = REPO / "eval" / "retrieval" / "alerts.jsonl"
NOISE = 0.012  # per-dimension sigma; with 384 dimensions, cosine to the original is about 0.95
DOCUMENT_SIZE = 500  # synthetic chunks per synthetic document (one delete + upsert each)
SERVICES = ("checkout", "payments", "orders", "search", "auth", "billing", "catalog", "gateway", "ledger", "mailer")
NAMESPACES = ("prod", "staging", "payments", "platform", "data")
LARGE = 10_000


@dataclass
class SizeResult:
    chunks: int
    queries: int
    index_seconds: float
    p50_ms: float
    p95_ms: float


@dataclass
class Report:
    model: str
    device: str
    sample_chunks: int
    chunks_per_s: float
    query_embed_ms: float
    sizes: list[SizeResult]


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
    sizes: Sequence[int], queries: int, queries_large: int, repeats: int, sample: int, progress: Progress
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
    results = [
        _bench_size(
            size, sampled, vectors, query_texts if size <= LARGE else spread, repeats, embedder, settings, progress
        )
        for size in sizes
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
        with KnowledgeBase(local, embedder) as kb:
            task: TaskID = progress.add_task(f"indexing {size:,} chunks (precomputed vectors)", total=size)
            start = time.perf_counter()
            for first in range(0, size, DOCUMENT_SIZE):
                ids = range(first, min(first + DOCUMENT_SIZE, size))
                batch = [vary(sampled[i % len(sampled)], i, rng) for i in ids]
                dense = [noisy(vectors[i % len(vectors)], noise) for i in ids]
                kb.write_chunks(f"synthetic/{first}", f"synthetic/{first}.md", batch, vectors=dense)
                progress.advance(task, len(batch))
            index_seconds = time.perf_counter() - start
            assert kb.count("runbooks") == size
            p50s, p95s = [], []
            task = progress.add_task(f"querying {size:,} chunks", total=repeats * len(queries))
            for _ in range(repeats):
                latencies = []
                for query in queries:
                    start = time.perf_counter()
                    kb.search(query, k=5)
                    latencies.append(time.perf_counter() - start)
                    progress.advance(task)
                p50s.append(_percentile(latencies, 50))
                p95s.append(_percentile(latencies, 95))
    p50, p95 = statistics.median(p50s) * 1000, statistics.median(p95s) * 1000
    return SizeResult(size, len(queries), index_seconds, p50, p95)


def render(report: Report, repeats: int, console: Console) -> None:
    console.print(
        f"model {report.model} on {report.device}; embedding throughput {report.chunks_per_s:,.1f} chunks/s "
        f"({report.sample_chunks} real runbook chunks, batch 64); one query embedded in {report.query_embed_ms:.1f} "
        f"ms (p50); medians over {repeats} runs"
    )
    table = Table(title="Hybrid search latency (query embedding included), k=5, local-mode Qdrant")
    for column in ("chunks", "queries a run", "index time (s, precomputed vectors)", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    for size in report.sizes:
        table.add_row(
            f"{size.chunks:,}",
            str(size.queries),
            f"{size.index_seconds:.1f}",
            f"{size.p50_ms:.1f}",
            f"{size.p95_ms:.1f}",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,50000", help="comma-separated collection sizes in chunks")
    parser.add_argument("--queries", type=int, default=50, help="timed queries per size and run")
    parser.add_argument("--queries-large", type=int, default=10, help=f"timed queries per run above {LARGE:,} chunks")
    parser.add_argument("--repeats", type=int, default=3, help="runs; figures are medians")
    parser.add_argument("--sample", type=int, default=64, help="real chunks embedded for the throughput figure")
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress, warnings.catch_warnings():
        # Qdrant warns above 20k points in local mode: the point of the large size is to show that cost.
        warnings.filterwarnings("ignore", message="Local mode is not recommended", category=UserWarning)
        report = run(sizes, args.queries, args.queries_large, args.repeats, args.sample, progress)
    render(report, args.repeats, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
