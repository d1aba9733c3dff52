"""The knowledge base: runbook chunks and resolved incidents in Qdrant, found by hybrid dense + sparse search.

Each point has a dense vector (`dense`, sentence embedding, cosine) and a sparse lexical vector (`sparse`, BM25
term weights with Qdrant's IDF modifier, see `sparse.py`). A search runs both as prefetches of one Query API
request and fuses them with reciprocal rank fusion: the dense side finds paraphrases ("pods keep restarting" for
a crash-loop runbook), the sparse side exact identifiers (alert and metric names) that embeddings blur.

Runbook points are keyed by file and chunk number (uuid5), and re-indexing a file first deletes all of its points,
so an edited runbook never leaves stale or duplicate sections behind; a file whose content hash is unchanged is
skipped. The points live in a `VectorStore` (`store.py`): Qdrant Edge in-process on `<state dir>/qdrant` (one
process per path), or a Qdrant server with `QDRANT_URL`. The embedding model loads on the first text that needs
embedding, not before: opening, counting, listing and searching an empty collection never load it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from vigil.knowledge import sparse
from vigil.knowledge.chunking import Chunk, chunk_file
from vigil.knowledge.embedder import Embedder
from vigil.knowledge.errors import KnowledgeBaseError as KnowledgeBaseError
from vigil.knowledge.errors import KnowledgeBaseLockedError as KnowledgeBaseLockedError
from vigil.knowledge.models import COLLECTIONS, INCIDENTS, RUNBOOKS, Collection, KnowledgeHit, ResolvedIncident
from vigil.knowledge.store import FieldMatch, ScoredPayload, StoredPoint, VectorQuery, VectorStore, open_store
from vigil.settings import Settings

SearchMode = Literal["hybrid", "dense", "sparse"]
SUFFIXES = frozenset({".md", ".markdown", ".txt"})
#: Bump when chunking or sparse weighting changes, so that unchanged files are re-indexed anyway.
INDEX_VERSION = "2"
#: Candidates fetched per side (dense, sparse) and after fusion, per hit asked for.
CANDIDATES_PER_HIT = 8
_ID_NAMESPACE = uuid.UUID("8f5a0c3e-5a43-4c1e-9d1b-6f0e2a7b9c11")


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


def _path(path: str) -> FieldMatch:
    return FieldMatch("path", path)


class KnowledgeBase:
    """Runbooks and resolved incidents, indexed and searched. Methods are synchronous and may be called from
    several threads (`asyncio.to_thread`): the store serialises what needs it, embedding has its own lock."""

    #: At most this many chunks of one runbook in a result, so that the top few name different runbooks.
    max_chunks_per_source = 2

    def __init__(self, settings: Settings, embedder: Embedder | None = None, store: VectorStore | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings.embedding_model, settings.embedding_device)
        self.store = store or open_store(settings)
        self.location = self.store.location
        self._dimension_checked = False

    @classmethod
    def open(cls, settings: Settings) -> KnowledgeBase:
        return cls(settings)

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings of `texts`; the first call also checks that the model fits the collections."""
        if not self._dimension_checked:
            for name in COLLECTIONS:
                size = self.store.dense_size(name)
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
                self.store.delete(RUNBOOKS, _path(stale))
                stats.removed += 1
        return stats

    def _index_file(self, file: Path, source: str) -> int | None:
        """Chunks written for `file`, or None when its content (and the model and index version) is unchanged."""
        raw = file.read_bytes()
        digest = hashlib.sha256(f"{INDEX_VERSION}\0{self.embedder.model_name}\0".encode() + raw).hexdigest()
        key = str(file)
        previous = next(self.store.payloads(RUNBOOKS, ["hash", "source"], _path(key), limit=1), None)
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
        vectors: Sequence[Sequence[float]] | None = None,
    ) -> int:
        """Replace the runbook points of document `path` by `chunks`; returns how many were written.

        `index_paths` is the way in for files; this is for documents that are not files, and for the retrieval
        benchmark, which passes precomputed dense `vectors` instead of embedding every synthetic chunk."""
        texts = [chunk.text for chunk in chunks]
        dense = self._encode(texts) if vectors is None else vectors
        points = [
            StoredPoint(
                id=_point_id(f"{path}#{index}"),
                dense=vector,
                sparse=sparse.document_vector(text),
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
        self.store.replace(RUNBOOKS, _path(path), points)
        return len(points)

    def _indexed_paths(self) -> set[str]:
        return {str(payload["path"]) for payload in self.store.payloads(RUNBOOKS, ["path"])}

    def index_incident(self, incident: ResolvedIncident) -> None:
        """Index (or re-index, replacing) a resolved incident; idempotent by incident id."""
        text = incident.document()
        point = StoredPoint(
            id=_point_id(f"incident:{incident.incident_id}"),
            dense=self._encode([text])[0],
            sparse=sparse.document_vector(text),
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
        self.store.replace(INCIDENTS, None, [point])

    # -- search --------------------------------------------------------------------------------------------------

    def search(
        self, query: str, k: int = 5, collection: str = RUNBOOKS, *, mode: SearchMode = "hybrid"
    ) -> list[KnowledgeHit]:
        return self.search_batch([query], k, collection, mode=mode)[0]

    def search_batch(
        self, queries: Sequence[str], k: int = 5, collection: str = RUNBOOKS, *, mode: SearchMode = "hybrid"
    ) -> list[list[KnowledgeHit]]:
        """The top `k` hits of each query; all queries are embedded in one batch and sent in one request.
        `mode` other than hybrid (dense or sparse alone) is for evaluation. An empty collection answers without
        embedding anything (no similar incidents yet should not cost loading the model)."""
        name = self._collection(collection)
        if k <= 0 or not queries or self.store.count(name) == 0:
            return [[] for _ in queries]
        limit = k * CANDIDATES_PER_HIT
        lexical = [sparse.query_vector(query) for query in queries]
        if mode == "sparse":
            requests = [VectorQuery(limit, sparse=terms) for terms in lexical]
        else:
            dense = self._encode(queries)
            requests = [
                VectorQuery(limit, dense=vector, sparse=terms if mode == "hybrid" and terms.indices else None)
                for vector, terms in zip(dense, lexical, strict=True)
            ]
        return [self._hits(found, k, name) for found in self.store.query_batch(name, requests)]

    def _hits(self, points: Sequence[ScoredPayload], k: int, collection: Collection) -> list[KnowledgeHit]:
        """Best first, without repeated texts, and at most `max_chunks_per_source` chunks of one runbook.

        Equal scores are ordered by source and chunk: RRF ties often (rank 1 + rank 4 on one side, rank 4 + rank 1
        on the other), and Qdrant Edge returns tied points in no fixed order, which would make the same incident
        cite runbooks in a different order from one run to the next."""
        hits: list[KnowledgeHit] = []
        seen_texts: set[str] = set()
        per_source: dict[str, int] = {}
        ordered = sorted(
            points, key=lambda p: (-p.score, str(p.payload.get("source", "")), int(p.payload.get("chunk", 0)))
        )
        for point in ordered:
            payload = point.payload
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
        return self.store.count(self._collection(collection))

    def sources(self) -> dict[str, int]:
        """Indexed runbooks and their chunk counts."""
        counts: dict[str, int] = {}
        for payload in self.store.payloads(RUNBOOKS, ["source"]):
            source = str(payload.get("source", ""))
            counts[source] = counts.get(source, 0) + 1
        return dict(sorted(counts.items()))

    @staticmethod
    def _collection(name: str) -> Collection:
        for collection in COLLECTIONS:
            if name == collection:
                return collection
        raise KnowledgeBaseError(f"unknown collection {name!r}: use one of {', '.join(COLLECTIONS)}")
