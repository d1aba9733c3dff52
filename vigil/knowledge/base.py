"""The knowledge base: runbook chunks and resolved incidents in Qdrant, found by hybrid dense + sparse search.

Each point has a dense vector (`dense`, sentence embedding, cosine) and a sparse lexical vector (`sparse`, BM25
term weights with Qdrant's IDF modifier, see `sparse.py`). A search runs both as prefetches of one Query API
request and fuses them with reciprocal rank fusion: the dense side finds paraphrases ("pods keep restarting" for
a crash-loop runbook), the sparse side exact identifiers (alert and metric names) that embeddings blur.

Runbook points are keyed by file and chunk number (uuid5), and re-indexing a file first deletes all of its points,
so an edited runbook never leaves stale or duplicate sections behind; a file whose content hash is unchanged is
skipped. Local mode (a path, the default) admits one process per path; `QDRANT_URL` points at a server instead.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from qdrant_client import QdrantClient, models
from qdrant_client.conversions.common_types import PointId
from qdrant_client.http.exceptions import ApiException, UnexpectedResponse

from vigil.knowledge import sparse
from vigil.knowledge.chunking import Chunk, chunk_file
from vigil.knowledge.embedder import Embedder
from vigil.knowledge.models import COLLECTIONS, INCIDENTS, RUNBOOKS, Collection, KnowledgeHit, ResolvedIncident
from vigil.settings import Settings

SearchMode = Literal["hybrid", "dense", "sparse"]
DENSE = "dense"
SPARSE = "sparse"
SUFFIXES = frozenset({".md", ".markdown", ".txt"})
#: Bump when chunking or sparse weighting changes, so that unchanged files are re-indexed anyway.
INDEX_VERSION = "2"
#: Candidates fetched per side (dense, sparse) and after fusion, per hit asked for.
CANDIDATES_PER_HIT = 8
UPSERT_BATCH = 512
_ID_NAMESPACE = uuid.UUID("8f5a0c3e-5a43-4c1e-9d1b-6f0e2a7b9c11")


class KnowledgeBaseError(RuntimeError):
    """A knowledge-base problem a user can fix; the CLI prints the message without a traceback."""


class KnowledgeBaseLockedError(KnowledgeBaseError):
    """The local Qdrant path is held by another process."""


class IndexStats(BaseModel):
    files: int = 0  # files looked at
    indexed: int = 0  # new or changed, (re)written
    unchanged: int = 0  # same content hash: skipped
    removed: int = 0  # gone from an indexed folder: their points deleted
    chunks: int = 0  # chunks written


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """The .md/.markdown/.txt files among `paths` and below the folders among them, sorted, each once."""
    files: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.suffix.lower() in SUFFIXES:
                    files[found.resolve()] = None
        elif path.is_file():
            files[path.resolve()] = None
        else:
            raise KnowledgeBaseError(f"no such file or folder: {path}")
    return list(files)


INSTALL_ROOT = Path(__file__).resolve().parents[2]
"""Where Vigil (and its shipped `runbooks/`) lives."""
SHIPPED_RUNBOOKS = INSTALL_ROOT / "runbooks"


def display_source(path: Path) -> str:
    """How a hit names its file: relative to Vigil's own folder for the shipped runbooks (`runbooks/sre/x.md`,
    whatever the working directory), else relative to the working directory when below it, else absolute."""
    for root in (INSTALL_ROOT, Path.cwd().resolve()):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def _point_id(key: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def _path_filter(path: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="path", match=models.MatchValue(value=path))])


def open_client(settings: Settings) -> QdrantClient:
    """A Qdrant client for `QDRANT_URL`, else local mode on the state dir, with a clear error when locked."""
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(url=settings.qdrant_url, api_key=api_key)
    path = settings.qdrant_path
    path.mkdir(parents=True, exist_ok=True)
    try:
        # Calls are serialised by KnowledgeBase's lock, so worker threads (asyncio.to_thread) may share it.
        return QdrantClient(path=str(path), force_disable_check_same_thread=True)
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise KnowledgeBaseLockedError(
            f"the knowledge base at {path} is in use by another process: local Qdrant admits one process per "
            "path, and a running `vigil up` (its ml worker) holds it. Stop `vigil up`, or run a Qdrant server "
            "and set QDRANT_URL for every Vigil process."
        ) from None


class KnowledgeBase:
    """Runbooks and resolved incidents, indexed and searched. Methods are synchronous and may be called from
    several threads (`asyncio.to_thread`): local-mode Qdrant calls are serialised, embedding has its own lock."""

    #: At most this many chunks of one runbook in a result, so that the top few name different runbooks.
    max_chunks_per_source = 2

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings.embedding_model, settings.embedding_device)
        self.location = settings.qdrant_url or str(settings.qdrant_path)
        self._client = open_client(settings)
        self._lock: AbstractContextManager[object] = threading.RLock() if not settings.qdrant_url else nullcontext()
        self._dimension_checked = False
        try:
            self._ensure_collections()
        except ApiException as exc:
            self._client.close()
            raise KnowledgeBaseError(f"Qdrant at {self.location} failed: {exc}") from None
        except BaseException:
            self._client.close()
            raise

    @classmethod
    def open(cls, settings: Settings) -> KnowledgeBase:
        return cls(settings)

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def _ensure_collections(self) -> None:
        with self._lock:
            missing = [name for name in COLLECTIONS if not self._client.collection_exists(name)]
        if not missing:
            return
        dimension = self.embedder.dimension
        with self._lock:
            for name in missing:
                try:
                    self._client.create_collection(
                        name,
                        vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                        sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                    )
                except UnexpectedResponse:
                    if not self._client.collection_exists(name):
                        raise
                    continue  # another process created it first (server mode)
                if self.settings.qdrant_url:  # payload indexes are a server feature; local mode ignores them
                    for field in ("path", "incident_id"):
                        self._client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings of `texts`; the first call also checks that the model fits the collections (done here, not
        in `__init__`, so that counting and stats need no model)."""
        if not self._dimension_checked:
            with self._lock:
                vectors = self._client.get_collection(RUNBOOKS).config.params.vectors
            size = vectors[DENSE].size if isinstance(vectors, dict) else None
            if size is not None and size != self.embedder.dimension:
                raise KnowledgeBaseError(
                    f"the knowledge base at {self.location} holds {size}-dimensional vectors, but the embedding "
                    f"model {self.embedder.model_name} makes {self.embedder.dimension}-dimensional ones: use the "
                    "model it was built with, or another state dir"
                )
            self._dimension_checked = True
        return self.embedder.encode(texts)

    # -- indexing ------------------------------------------------------------------------------------------------

    def index_paths(self, paths: Sequence[Path], progress: Callable[[str], None] | None = None) -> IndexStats:
        """Index runbook files, and the .md/.markdown/.txt files below folders. A changed file's points are
        replaced, an unchanged one is skipped; files gone from an indexed folder lose their points."""
        stats = IndexStats()
        files = expand_paths(paths)
        for file in files:
            source = display_source(file)
            stats.files += 1
            written = self._index_file(file, source)
            if written is None:
                stats.unchanged += 1
            else:
                stats.indexed += 1
                stats.chunks += written
            if progress is not None:
                progress(source)
        present = {str(file) for file in files}
        folders = [str(path.resolve()) + "/" for path in paths if path.is_dir()]
        for stale in sorted(self._indexed_paths() - present):
            if any(stale.startswith(folder) for folder in folders):
                with self._lock:
                    self._client.delete(RUNBOOKS, points_selector=_path_filter(stale))
                stats.removed += 1
        return stats

    def _index_file(self, file: Path, source: str) -> int | None:
        """Chunks written for `file`, or None when its content (and the model and index version) is unchanged."""
        raw = file.read_bytes()
        digest = hashlib.sha256(f"{INDEX_VERSION}\0{self.embedder.model_name}\0".encode() + raw).hexdigest()
        key = str(file)
        with self._lock:
            existing, _ = self._client.scroll(
                RUNBOOKS, scroll_filter=_path_filter(key), limit=1, with_payload=["hash", "source"]
            )
        previous = existing[0].payload if existing else None
        if previous and previous.get("hash") == digest and previous.get("source") == source:
            return None
        chunks = chunk_file(file, raw.decode("utf-8", errors="replace"))
        return self.write_chunks(key, source, chunks, digest=digest)

    def write_chunks(
        self,
        path: str,
        source: str,
        chunks: Sequence[Chunk],
        *,
        digest: str = "",
        vectors: Sequence[list[float]] | None = None,
    ) -> int:
        """Replace the runbook points of document `path` by `chunks`; returns how many were written.

        `index_paths` is the way in for files; this is for documents that are not files, and for the retrieval
        benchmark, which passes precomputed dense `vectors` instead of embedding every synthetic chunk."""
        texts = [chunk.text for chunk in chunks]
        dense = self._encode(texts) if vectors is None else vectors
        points = [
            models.PointStruct(
                id=_point_id(f"{path}#{index}"),
                vector={DENSE: list(vector), SPARSE: sparse.document_vector(text)},
                payload={
                    "path": path,
                    "source": source,
                    "title": chunk.title,
                    "section": chunk.section,
                    "chunk": index,
                    "text": text,
                    "hash": digest,
                },
            )
            for index, (chunk, text, vector) in enumerate(zip(chunks, texts, dense, strict=True))
        ]
        with self._lock:
            self._client.delete(RUNBOOKS, points_selector=_path_filter(path))
            for start in range(0, len(points), UPSERT_BATCH):
                self._client.upsert(RUNBOOKS, points=points[start : start + UPSERT_BATCH])
        return len(points)

    def _indexed_paths(self) -> set[str]:
        return {str(payload["path"]) for payload in self._scroll_payloads(RUNBOOKS, ["path"])}

    def _scroll_payloads(self, collection: Collection, fields: list[str]) -> Iterator[dict[str, object]]:
        offset: PointId | None = None
        while True:
            with self._lock:
                records, offset = self._client.scroll(
                    collection, limit=1024, offset=offset, with_payload=fields, with_vectors=False
                )
            for record in records:
                yield dict(record.payload or {})
            if offset is None:
                return

    def index_incident(self, incident: ResolvedIncident) -> None:
        """Index (or re-index, replacing) a resolved incident; idempotent by incident id."""
        text = incident.document()
        vector = self._encode([text])[0]
        point = models.PointStruct(
            id=_point_id(f"incident:{incident.incident_id}"),
            vector={DENSE: vector, SPARSE: sparse.document_vector(text)},
            payload={
                "incident_id": incident.incident_id,
                "source": incident.incident_id,
                "title": incident.title,
                "text": text,
                "category": incident.category,
                "services": incident.services,
                "resolved_at": incident.resolved_at.isoformat(),
            },
        )
        with self._lock:
            self._client.upsert(INCIDENTS, points=[point])

    # -- search --------------------------------------------------------------------------------------------------

    def search(
        self, query: str, k: int = 5, collection: str = RUNBOOKS, *, mode: SearchMode = "hybrid"
    ) -> list[KnowledgeHit]:
        return self.search_batch([query], k, collection, mode=mode)[0]

    def search_batch(
        self, queries: Sequence[str], k: int = 5, collection: str = RUNBOOKS, *, mode: SearchMode = "hybrid"
    ) -> list[list[KnowledgeHit]]:
        """The top `k` hits of each query; all queries are embedded in one batch and sent in one request.
        `mode` other than hybrid (dense or sparse alone) is for evaluation."""
        name = self._collection(collection)
        if k <= 0 or not queries:
            return [[] for _ in queries]
        dense = self._encode(queries) if mode != "sparse" else [[] for _ in queries]
        limit = k * CANDIDATES_PER_HIT
        requests = [self._request(q, vector, limit, mode) for q, vector in zip(queries, dense, strict=True)]
        with self._lock:
            responses = self._client.query_batch_points(name, requests=requests)
        return [self._hits(response.points, k, name) for response in responses]

    @staticmethod
    def _request(query: str, dense: list[float], limit: int, mode: SearchMode) -> models.QueryRequest:
        lexical = sparse.query_vector(query)
        if mode == "dense" or (mode == "hybrid" and not lexical.indices):
            return models.QueryRequest(query=dense, using=DENSE, limit=limit, with_payload=True)
        if mode == "sparse":
            return models.QueryRequest(query=lexical, using=SPARSE, limit=limit, with_payload=True)
        return models.QueryRequest(
            prefetch=[
                models.Prefetch(query=dense, using=DENSE, limit=limit),
                models.Prefetch(query=lexical, using=SPARSE, limit=limit),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=limit,
            with_payload=True,
        )

    def _hits(self, points: Sequence[models.ScoredPoint], k: int, collection: Collection) -> list[KnowledgeHit]:
        """Best first, without repeated texts, and at most `max_chunks_per_source` chunks of one runbook."""
        hits: list[KnowledgeHit] = []
        seen_texts: set[str] = set()
        per_source: dict[str, int] = {}
        for point in points:
            payload = point.payload or {}
            text = str(payload.get("text", ""))
            source = str(payload.get("source", ""))
            if text in seen_texts:
                continue
            if collection == RUNBOOKS and per_source.get(source, 0) >= self.max_chunks_per_source:
                continue
            seen_texts.add(text)
            per_source[source] = per_source.get(source, 0) + 1
            hits.append(
                KnowledgeHit(
                    source=source,
                    title=str(payload.get("title", "")),
                    score=float(point.score),
                    text=text,
                    collection=collection,
                )
            )
            if len(hits) == k:
                break
        return hits

    # -- inspection ----------------------------------------------------------------------------------------------

    def count(self, collection: str) -> int:
        name = self._collection(collection)
        with self._lock:
            return self._client.count(name, exact=True).count

    def sources(self) -> dict[str, int]:
        """Indexed runbooks and their chunk counts."""
        counts: dict[str, int] = {}
        for payload in self._scroll_payloads(RUNBOOKS, ["source"]):
            source = str(payload.get("source", ""))
            counts[source] = counts.get(source, 0) + 1
        return dict(sorted(counts.items()))

    @staticmethod
    def _collection(name: str) -> Collection:
        for collection in COLLECTIONS:
            if name == collection:
                return collection
        raise KnowledgeBaseError(f"unknown collection {name!r}: use one of {', '.join(COLLECTIONS)}")
