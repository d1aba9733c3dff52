"""The embedded engine: Qdrant Edge (`qdrant-edge-py`), Qdrant's own search engine running in this process.

Each collection is an Edge shard in `<path>/<collection>` (WAL, segments, its config), with keyword payload
indexes on the fields points are looked up and deleted by. Sparse vectors are scored by Qdrant's inverted index
with the IDF modifier and fused with dense results by Qdrant's RRF, as a server would; unlike qdrant-client's local
mode, nothing is scored in Python, so a query stays in milliseconds at tens of thousands of chunks.

One process owns a path: `edge.lock` is held (flock) from open to close, so a second process gets a clear
`KnowledgeBaseLockedError` instead of a WAL error. Shard calls are serialised by a lock, so worker threads
(`asyncio.to_thread`) may share a store.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from vigil.knowledge.errors import KnowledgeBaseLockedError, locked_message
from vigil.knowledge.models import COLLECTIONS, Collection
from vigil.knowledge.sparse import SparseTerms
from vigil.knowledge.store import (
    DENSE,
    KEY_FIELDS,
    RRF_K,
    SPARSE,
    FieldMatch,
    ScoredPayload,
    StoredPoint,
    VectorQuery,
    scroll_payloads,
)

LOCK_FILE = "edge.lock"
CONFIG_FILE = "edge_config.json"  # written by Qdrant Edge into each shard folder


def _filter(match: FieldMatch) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(key=match.key, match=qe.MatchValue(match.value))])


def _sparse(terms: SparseTerms) -> qe.SparseVector:
    return qe.SparseVector(list(terms.indices), list(terms.values))


def _request(query: VectorQuery) -> qe.QueryRequest:
    sides = []
    if query.dense is not None:
        sides.append(qe.Query.Nearest(list(query.dense), using=DENSE))
    if query.sparse is not None:
        sides.append(qe.Query.Nearest(_sparse(query.sparse), using=SPARSE))
    if len(sides) == 1:
        return qe.QueryRequest(limit=query.limit, query=sides[0], with_payload=True)
    return qe.QueryRequest(
        limit=query.limit,
        prefetches=[qe.Prefetch(limit=query.limit, query=side) for side in sides],
        query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the 0.9 stubs type it as Fusion, not Fusion.Rrf
        with_payload=True,
    )


class EdgeStore:
    """Both collections as Qdrant Edge shards below `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._lock_fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise KnowledgeBaseLockedError(locked_message(path)) from None
        self._shards: dict[Collection, qe.EdgeShard] = {}
        try:
            for name in COLLECTIONS:
                if (path / name / CONFIG_FILE).exists():
                    self._shards[name] = qe.EdgeShard.load(str(path / name))
        except BaseException:
            self.close()
            raise

    def _shard(self, collection: Collection, dimension: int) -> qe.EdgeShard:
        shard = self._shards.get(collection)
        if shard is None:
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            shard = qe.EdgeShard.create(str(self.path / collection), config)
            for key in KEY_FIELDS:
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            self._shards[collection] = shard
        return shard

    def dense_size(self, collection: Collection) -> int | None:
        config = self.path / collection / CONFIG_FILE
        if collection not in self._shards or not config.exists():
            return None
        size = json.loads(config.read_text(encoding="utf-8")).get("vectors", {}).get(DENSE, {}).get("size")
        return int(size) if size is not None else None

    def replace(self, collection: Collection, match: FieldMatch | None, points: Sequence[StoredPoint]) -> None:
        with self._lock:
            if match is not None and collection in self._shards:
                self._shards[collection].update(qe.UpdateOperation.delete_points_by_filter(_filter(match)))
            if not points:
                return
            shard = self._shard(collection, len(points[0].dense))
            shard.update(
                qe.UpdateOperation.upsert_points(
                    [
                        qe.Point(point.id, {DENSE: list(point.dense), SPARSE: _sparse(point.sparse)}, point.payload)
                        for point in points
                    ]
                )
            )

    def delete(self, collection: Collection, match: FieldMatch) -> None:
        self.replace(collection, match, [])

    def query_batch(self, collection: Collection, queries: Sequence[VectorQuery]) -> list[list[ScoredPayload]]:
        with self._lock:
            shard = self._shards.get(collection)
            if shard is None:
                return [[] for _ in queries]
            found = shard.query_batch(qe.QueryBatchRequest([_request(query) for query in queries]))
        return [[ScoredPayload(point.score, dict(point.payload or {})) for point in points] for points in found]

    def payloads(
        self, collection: Collection, fields: Sequence[str], match: FieldMatch | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        def fetch(offset: qe.PointId | None, page: int) -> tuple[Sequence[Any], qe.PointId | None] | None:
            with self._lock:
                shard = self._shards.get(collection)
                if shard is None:
                    return None
                request = qe.ScrollRequest(
                    offset=offset,
                    limit=page,
                    filter=_filter(match) if match is not None else None,
                    with_payload=list(fields),
                    with_vector=False,
                )
                records, next_offset = shard.scroll(request)
                return records, next_offset

        return scroll_payloads(fetch, limit)

    def count(self, collection: Collection) -> int:
        with self._lock:
            shard = self._shards.get(collection)
            return shard.count(qe.CountRequest(exact=True)) if shard is not None else 0

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
            if self._lock_fd >= 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = -1
