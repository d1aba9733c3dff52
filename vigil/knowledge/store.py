"""The one small interface the knowledge base stores its points through, and the choice of engine.

Two engines implement it: Qdrant Edge (`edge.py`, the embedded default: Qdrant's own engine in-process on
`<state dir>/qdrant`) and qdrant-client (`client_store.py`: a Qdrant server at `QDRANT_URL`, or qdrant-client's
pure-Python local mode, kept as the retrieval benchmark's baseline). Both hold per collection a dense vector
`dense` (cosine) and a sparse vector `sparse` with Qdrant's IDF modifier, and answer a query with both vectors by
reciprocal rank fusion of a dense and a sparse prefetch, with the same RRF constant, so either engine ranks alike.

Collections are created on first write, with the dimension of the vectors written: reading, counting and
searching an absent collection finds nothing, and needs no embedding model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vigil.knowledge.models import Collection
from vigil.knowledge.sparse import SparseTerms
from vigil.settings import Settings

DENSE = "dense"
SPARSE = "sparse"
#: Reciprocal rank fusion constant: score = sum of 1 / (RRF_K + rank). Qdrant's own default, said explicitly.
RRF_K = 2
#: Payload fields that points are looked up and deleted by (keyword indexes where the engine has them).
KEY_FIELDS = ("path", "incident_id")


@dataclass(frozen=True)
class StoredPoint:
    id: str  # a UUID string, derived from a stable key so that re-writing a point replaces it
    dense: Sequence[float]
    sparse: SparseTerms
    payload: dict[str, Any]


@dataclass(frozen=True)
class FieldMatch:
    """Points whose payload `key` equals `value`."""

    key: str
    value: str


@dataclass(frozen=True)
class VectorQuery:
    """Dense and sparse: RRF fusion of both; one of them: that one alone. `limit` per side and after fusion."""

    limit: int
    dense: Sequence[float] | None = None
    sparse: SparseTerms | None = None


@dataclass(frozen=True)
class ScoredPayload:
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class VectorStore(Protocol):
    """What the knowledge base needs of a vector engine. Implementations are safe to call from several threads."""

    location: str

    def dense_size(self, collection: Collection) -> int | None:
        """The dense dimension of `collection`, None while it does not exist."""
        ...

    def replace(self, collection: Collection, match: FieldMatch | None, points: Sequence[StoredPoint]) -> None:
        """Delete the points matching `match` (if given), then upsert `points`, creating the collection if needed."""
        ...

    def delete(self, collection: Collection, match: FieldMatch) -> None: ...

    def query_batch(self, collection: Collection, queries: Sequence[VectorQuery]) -> list[list[ScoredPayload]]:
        """Best first, with payloads; one list per query, in order."""
        ...

    def payloads(
        self, collection: Collection, fields: Sequence[str], match: FieldMatch | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The payload `fields` of the points (matching `match`), at most `limit` of them."""
        ...

    def count(self, collection: Collection) -> int: ...

    def close(self) -> None: ...


SCROLL_PAGE = 1024


def scroll_payloads(
    fetch: Callable[[Any, int], tuple[Sequence[Any], Any] | None], limit: int | None
) -> Iterator[dict[str, Any]]:
    """The payloads of a scroll, page by page: `fetch(offset, page size)` returns the page's records (with a
    `payload`) and the next offset (None at the end), or None when there is nothing to scroll."""
    offset: Any = None
    left = limit
    while left is None or left > 0:
        page = fetch(offset, SCROLL_PAGE if left is None else min(left, SCROLL_PAGE))
        if page is None:
            return
        records, offset = page
        for record in records:
            yield dict(record.payload or {})
        if left is not None:
            left -= len(records)
        if offset is None:
            return


def open_store(settings: Settings) -> VectorStore:
    """A Qdrant server client for `QDRANT_URL`, else Qdrant Edge on `<state dir>/qdrant` (imported lazily: each
    engine's import costs a noticeable fraction of a second, and a process needs only one)."""
    if settings.qdrant_url:
        from vigil.knowledge.client_store import ClientStore

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ClientStore.server(settings.qdrant_url, api_key)
    from vigil.knowledge.edge import EdgeStore
    from vigil.knowledge.migrate import migrate_local_mode

    store = EdgeStore(settings.qdrant_path)
    migrate_local_mode(settings.qdrant_path, store)
    return store
