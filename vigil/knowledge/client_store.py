"""qdrant-client behind the store interface: a Qdrant server (`QDRANT_URL`), or qdrant-client's local mode.

Local mode (`ClientStore.local`) scores sparse vectors in Python, point by point, so a query costs time linear in
the collection (seconds at 50k chunks); it is kept only as the retrieval benchmark's baseline for the embedded
engine, Qdrant Edge (`edge.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.conversions.common_types import PointId
from qdrant_client.http.exceptions import ApiException, UnexpectedResponse

from vigil.knowledge.errors import KnowledgeBaseError
from vigil.knowledge.models import Collection
from vigil.knowledge.sparse import SparseTerms
from vigil.knowledge.store import (
    DENSE,
    KEY_FIELDS,
    SPARSE,
    FieldMatch,
    ScoredPayload,
    StoredPoint,
    VectorQuery,
    scroll_payloads,
)

UPSERT_BATCH = 512


def _filter(match: FieldMatch) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=match.key, match=models.MatchValue(value=match.value))])


def _sparse(terms: SparseTerms) -> models.SparseVector:
    return models.SparseVector(indices=list(terms.indices), values=list(terms.values))


def _request(query: VectorQuery) -> models.QueryRequest:
    sides: list[models.Prefetch] = []
    if query.dense is not None:
        sides.append(models.Prefetch(query=list(query.dense), using=DENSE, limit=query.limit))
    if query.sparse is not None:
        sides.append(models.Prefetch(query=_sparse(query.sparse), using=SPARSE, limit=query.limit))
    if len(sides) == 1:
        side = sides[0]
        return models.QueryRequest(query=side.query, using=side.using, limit=query.limit, with_payload=True)
    # FusionQuery rather than RrfQuery(k=RRF_K): servers before 1.16 know only the former, whose k is Qdrant's
    # default, the same RRF_K.
    return models.QueryRequest(
        prefetch=sides, query=models.FusionQuery(fusion=models.Fusion.RRF), limit=query.limit, with_payload=True
    )


class ClientStore:
    """Collections in Qdrant through qdrant-client. Server calls run concurrently; local-mode calls are
    serialised (local mode is one Python object over files)."""

    def __init__(self, client: QdrantClient, location: str, *, server: bool) -> None:
        self._client = client
        self.location = location
        self._server = server
        self._lock: AbstractContextManager[object] = nullcontext() if server else threading.RLock()
        self._existing: set[Collection] = set()  # collections are never dropped, so a yes is remembered

    @classmethod
    def server(cls, url: str, api_key: str | None = None) -> ClientStore:
        return cls(QdrantClient(url=url, api_key=api_key), url, server=True)

    @classmethod
    def local(cls, path: Path) -> ClientStore:
        """qdrant-client local mode on `path` (the benchmark baseline)."""
        path.mkdir(parents=True, exist_ok=True)
        client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        return cls(client, str(path), server=False)

    @contextmanager
    def _call(self) -> Iterator[QdrantClient]:
        with self._lock:
            try:
                yield self._client
            except ApiException as exc:
                raise KnowledgeBaseError(f"Qdrant at {self.location} failed: {exc}") from None

    def _exists(self, collection: Collection) -> bool:
        if collection not in self._existing:
            with self._call() as client:
                if client.collection_exists(collection):
                    self._existing.add(collection)
        return collection in self._existing

    def _create(self, collection: Collection, dimension: int) -> None:
        if self._exists(collection):
            return
        with self._call() as client:
            try:
                client.create_collection(
                    collection,
                    vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
            except UnexpectedResponse:
                if client.collection_exists(collection):
                    self._existing.add(collection)
                    return  # another process created it first
                raise
            self._existing.add(collection)
            if self._server:  # payload indexes are a server feature; local mode ignores them
                for key in KEY_FIELDS:
                    client.create_payload_index(collection, key, models.PayloadSchemaType.KEYWORD)

    def dense_size(self, collection: Collection) -> int | None:
        if not self._exists(collection):
            return None
        with self._call() as client:
            vectors = client.get_collection(collection).config.params.vectors
        return vectors[DENSE].size if isinstance(vectors, dict) else None

    def replace(self, collection: Collection, match: FieldMatch | None, points: Sequence[StoredPoint]) -> None:
        if points:
            self._create(collection, len(points[0].dense))
        elif not self._exists(collection):
            return
        structs = [
            models.PointStruct(
                id=point.id, vector={DENSE: list(point.dense), SPARSE: _sparse(point.sparse)}, payload=point.payload
            )
            for point in points
        ]
        with self._call() as client:
            if match is not None:
                client.delete(collection, points_selector=_filter(match))
            for start in range(0, len(structs), UPSERT_BATCH):
                client.upsert(collection, points=structs[start : start + UPSERT_BATCH])

    def delete(self, collection: Collection, match: FieldMatch) -> None:
        self.replace(collection, match, [])

    def query_batch(self, collection: Collection, queries: Sequence[VectorQuery]) -> list[list[ScoredPayload]]:
        if not self._exists(collection):
            return [[] for _ in queries]
        with self._call() as client:
            responses = client.query_batch_points(collection, requests=[_request(query) for query in queries])
        return [
            [ScoredPayload(point.score, dict(point.payload or {})) for point in response.points]
            for response in responses
        ]

    def payloads(
        self, collection: Collection, fields: Sequence[str], match: FieldMatch | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        def fetch(offset: PointId | None, page: int) -> tuple[Sequence[Any], PointId | None] | None:
            if not self._exists(collection):
                return None
            with self._call() as client:
                return client.scroll(
                    collection,
                    scroll_filter=_filter(match) if match is not None else None,
                    limit=page,
                    offset=offset,
                    with_payload=list(fields),
                    with_vectors=False,
                )

        return scroll_payloads(fetch, limit)

    def count(self, collection: Collection) -> int:
        if not self._exists(collection):
            return 0
        with self._call() as client:
            return client.count(collection, exact=True).count

    def close(self) -> None:
        with self._lock:
            self._client.close()
