"""Carry a knowledge base written by qdrant-client's local mode (Vigil's embedded engine before Qdrant Edge) over
to Qdrant Edge, once, so an upgrade loses no indexed resolved incident and re-embeds no runbook.

Local mode keeps `<path>/meta.json` and `<path>/collection/<name>/`; Edge keeps `<path>/<name>/`, so both live
side by side under the same path. Points are copied with their ids, vectors and payloads (the runbook chunks
keep the file hashes that let unchanged files be skipped). A collection that Edge already holds is left alone;
the old files stay where they are, and `migrated-from-local-mode` records what was copied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vigil.knowledge.models import COLLECTIONS, Collection
from vigil.knowledge.sparse import SparseTerms
from vigil.knowledge.store import DENSE, SPARSE, StoredPoint, VectorStore

log = logging.getLogger("vigil.knowledge")

LOCAL_MODE_META = "meta.json"
MIGRATED_MARKER = "migrated-from-local-mode"
_PAGE = 512


def needs_migration(path: Path) -> bool:
    return (path / LOCAL_MODE_META).exists() and not (path / MIGRATED_MARKER).exists()


def _points(client: Any, collection: Collection) -> Iterator[StoredPoint]:
    offset = None
    while True:
        records, offset = client.scroll(collection, limit=_PAGE, offset=offset, with_payload=True, with_vectors=True)
        for record in records:
            vectors = record.vector or {}
            sparse = vectors.get(SPARSE)
            yield StoredPoint(
                id=str(record.id),
                dense=list(vectors.get(DENSE) or []),
                sparse=SparseTerms(list(sparse.indices), list(sparse.values)) if sparse else SparseTerms([], []),
                payload=dict(record.payload or {}),
            )
        if offset is None:
            return


def migrate_local_mode(path: Path, target: VectorStore) -> dict[str, int] | None:
    """Copy the local-mode collections under `path` into `target` unless done before; what was copied per
    collection, or None when there was nothing to do."""
    if not needs_migration(path):
        return None
    from qdrant_client import QdrantClient  # only upgrades pay for its import

    copied: dict[str, int] = {}
    client = QdrantClient(path=str(path))
    try:
        for collection in COLLECTIONS:
            if not client.collection_exists(collection) or target.count(collection):
                continue
            points = [point for point in _points(client, collection) if point.dense]
            if points:
                target.replace(collection, None, points)
            copied[collection] = len(points)
    finally:
        client.close()
    (path / MIGRATED_MARKER).write_text(json.dumps(copied) + "\n")
    log.info("knowledge base carried over from qdrant-client local mode: %s", copied)
    return copied
