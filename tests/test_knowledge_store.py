"""The knowledge base's stores: Qdrant Edge (the embedded default) against qdrant-client local mode, on the
fixture runbooks' real chunks and sparse vectors with random dense vectors (no embedding model)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.test_knowledge import FIXTURES
from vigil.knowledge.chunking import chunk_file
from vigil.knowledge.client_store import ClientStore
from vigil.knowledge.edge import EdgeStore
from vigil.knowledge.models import INCIDENTS, RUNBOOKS
from vigil.knowledge.sparse import document_vector, query_vector
from vigil.knowledge.store import RRF_K, FieldMatch, StoredPoint, VectorQuery, VectorStore

DIMENSION = 16


def fixture_points() -> list[StoredPoint]:
    """The fixture runbooks' real chunks and sparse vectors, with seeded random unit dense vectors."""
    rng = random.Random(3)
    points: list[StoredPoint] = []
    for file in sorted(FIXTURES.glob("*.md")):
        for n, chunk in enumerate(chunk_file(file, file.read_text())):
            dense = [rng.gauss(0, 1) for _ in range(DIMENSION)]
            norm = sum(x * x for x in dense) ** 0.5
            points.append(
                StoredPoint(
                    id=f"00000000-0000-4000-8000-{len(points):012d}",
                    dense=[x / norm for x in dense],
                    sparse=document_vector(chunk.text),
                    payload={"path": file.name, "chunk": n, "text": chunk.text},
                )
            )
    return points


def ranked(store: VectorStore, queries: Sequence[VectorQuery]) -> list[list[tuple[float, str, int]]]:
    """Hits as (score, path, chunk), best first; ties in any order (the engines break them differently)."""
    return [
        sorted(((round(hit.score, 3), hit.payload["path"], hit.payload["chunk"]) for hit in hits), reverse=True)
        for hits in store.query_batch(RUNBOOKS, queries)
    ]


def side_queries() -> list[tuple[VectorQuery, VectorQuery]]:
    """(dense, sparse) query pairs: a chunk's own dense vector and an alert-like text."""
    points = fixture_points()
    rng = random.Random(5)
    texts = ("KubePodCrashLooping back-off", "disk almost full", "too many clients", "certificate expires")
    return [
        (VectorQuery(10, dense=list(points[rng.randrange(len(points))].dense)), VectorQuery(10, sparse=query_vector(t)))
        for t in texts
    ]


def test_edge_scores_like_qdrant_client_local_mode(tmp_path: Path) -> None:
    """Same points, same requests: cosine and IDF-weighted sparse scores and orders agree between the engines."""
    queries = [query for pair in side_queries() for query in pair]
    edge, local = EdgeStore(tmp_path / "edge"), ClientStore.local(tmp_path / "local")
    try:
        for store in (edge, local):
            store.replace(RUNBOOKS, None, fixture_points())
        edge_ranks, local_ranks = ranked(edge, queries), ranked(local, queries)
    finally:
        edge.close()
        local.close()
    assert all(len(ranks) >= 3 for ranks in edge_ranks)
    for edge_hits, local_hits in zip(edge_ranks, local_ranks, strict=True):
        assert [hit[0] for hit in edge_hits] == pytest.approx([hit[0] for hit in local_hits], abs=2e-3)
        lowest = edge_hits[-1][0]  # the last tie may be cut at the limit differently: compare the hits above it
        assert [hit for hit in edge_hits if hit[0] > lowest] == [hit for hit in local_hits if hit[0] > lowest]


def test_edge_fuses_dense_and_sparse_by_rrf(tmp_path: Path) -> None:
    """A hybrid query scores each point sum(1 / (RRF_K + rank)) over the dense and sparse rankings (rank from 0)."""
    store = EdgeStore(tmp_path / "edge")
    try:
        store.replace(RUNBOOKS, None, fixture_points())
        for dense, sparse in side_queries():
            sides = store.query_batch(RUNBOOKS, [dense, sparse])
            expected: dict[str, float] = {}
            for hits in sides:
                for rank, hit in enumerate(hits):
                    key = f"{hit.payload['path']}#{hit.payload['chunk']}"
                    expected[key] = expected.get(key, 0.0) + 1 / (RRF_K + rank)
            fused = store.query_batch(RUNBOOKS, [VectorQuery(10, dense=dense.dense, sparse=sparse.sparse)])[0]
            assert len(fused) == min(10, len(expected))
            for hit in fused:
                assert hit.score == pytest.approx(expected[f"{hit.payload['path']}#{hit.payload['chunk']}"], abs=1e-4)
    finally:
        store.close()


def test_edge_replace_delete_and_payload_lookup(tmp_path: Path) -> None:
    points = fixture_points()
    store = EdgeStore(tmp_path / "kb")
    try:
        assert store.dense_size(RUNBOOKS) is None
        assert store.count(RUNBOOKS) == 0
        assert store.query_batch(RUNBOOKS, [VectorQuery(5, sparse=query_vector("disk"))]) == [[]]
        store.replace(RUNBOOKS, None, points)
        assert store.dense_size(RUNBOOKS) == DIMENSION
        disk = FieldMatch("path", "disk-full.md")
        disk_chunks = sum(point.payload["path"] == "disk-full.md" for point in points)
        assert [p["chunk"] for p in store.payloads(RUNBOOKS, ["chunk"], disk)] == list(range(disk_chunks))
        assert len(list(store.payloads(RUNBOOKS, ["path"], disk, limit=1))) == 1
        edited = StoredPoint("00000000-0000-4000-8000-999999999999", points[0].dense, points[0].sparse, {})
        edited.payload.update(path="disk-full.md", chunk=0, text="edited")
        store.replace(RUNBOOKS, disk, [edited])  # the file's old chunks go, its one new chunk stays
        assert store.count(RUNBOOKS) == len(points) - disk_chunks + 1
        assert [p["text"] for p in store.payloads(RUNBOOKS, ["text"], disk)] == ["edited"]
        store.delete(RUNBOOKS, disk)
        assert store.count(RUNBOOKS) == len(points) - disk_chunks
        assert all(p["path"] != "disk-full.md" for p in store.payloads(RUNBOOKS, ["path"]))
        assert store.count(INCIDENTS) == 0
    finally:
        store.close()


def test_a_local_mode_knowledge_base_is_carried_over_to_edge_once(tmp_path: Path) -> None:
    """An upgrade from qdrant-client local mode (the embedded engine before Qdrant Edge) keeps every point."""
    from vigil.knowledge.migrate import MIGRATED_MARKER
    from vigil.knowledge.store import open_store
    from vigil.settings import Settings

    settings = Settings(state_dir=tmp_path / "state")
    points = fixture_points()
    incident = StoredPoint(
        id="00000000-0000-4000-8000-999999999999",
        dense=points[0].dense,
        sparse=points[0].sparse,
        payload={"incident_id": "incident-old-1", "text": "root cause: the primary ran out of disk"},
    )
    old = ClientStore.local(settings.qdrant_path)
    old.replace(RUNBOOKS, None, points)
    old.replace(INCIDENTS, None, [incident])
    old.close()

    store = open_store(settings)
    try:
        assert store.count(RUNBOOKS) == len(points)
        assert list(store.payloads(INCIDENTS, ["incident_id", "text"])) == [incident.payload]
        hits = store.query_batch(INCIDENTS, [VectorQuery(limit=1, dense=incident.dense, sparse=incident.sparse)])
        assert hits[0][0].payload["incident_id"] == "incident-old-1"
    finally:
        store.close()
    assert (settings.qdrant_path / MIGRATED_MARKER).exists()

    again = open_store(settings)  # a second start copies nothing again
    try:
        assert again.count(RUNBOOKS) == len(points)
        assert again.count(INCIDENTS) == 1
    finally:
        again.close()
