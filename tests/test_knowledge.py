"""Knowledge base on real components: local-mode Qdrant in a temporary folder and the real embedding model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vigil.cli import app
from vigil.knowledge.base import KnowledgeBase, KnowledgeBaseLockedError
from vigil.knowledge.chunking import chunk_markdown
from vigil.knowledge.embedder import Embedder
from vigil.knowledge.models import INCIDENTS, RUNBOOKS, ResolvedIncident
from vigil.knowledge.query import query_for_alert
from vigil.knowledge.sparse import tokenize
from vigil.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "runbooks"


def make_settings(state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir).model_copy(update={"qdrant_url": None})


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    embedder = Embedder()
    embedder.encode(["load the model once"])
    return embedder


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[KnowledgeBase]:
    """The fixture runbooks, indexed once for the read-only tests."""
    kb = KnowledgeBase(make_settings(tmp_path_factory.mktemp("kb")), embedder)
    kb.index_paths([FIXTURES])
    yield kb
    kb.close()


@pytest.fixture
def kb(tmp_path: Path, embedder: Embedder) -> Iterator[KnowledgeBase]:
    kb = KnowledgeBase(make_settings(tmp_path / "state"), embedder)
    yield kb
    kb.close()


def test_chunks_keep_title_and_heading_path() -> None:
    text = (
        "---\nowner: sre\n---\n# Disk almost full\n\nIntro.\n\n## Diagnosis\n\n### Find what grew\n\n"
        "```bash\n# a comment, not a heading\ndu -xh /var\n```\n\n## Empty\n## Mitigation\n\nDelete logs.\n"
    )
    chunks = chunk_markdown(text, "disk-full")
    assert [(c.title, c.headings) for c in chunks] == [
        ("Disk almost full", ()),
        ("Disk almost full", ("Diagnosis", "Find what grew")),
        ("Disk almost full", ("Mitigation",)),
    ]
    assert chunks[1].text.startswith("Disk almost full > Diagnosis > Find what grew\n")
    assert "# a comment, not a heading" in chunks[1].text
    assert chunk_markdown("No heading here.", "notes")[0].title == "notes"


def test_long_sections_are_cut_at_paragraphs() -> None:
    body = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(10))
    chunks = chunk_markdown(f"# Big\n\n## Steps\n\n{body}", "big", max_chars=700)
    assert len(chunks) > 1
    assert all(c.headings == ("Steps",) and len(c.body) <= 700 for c in chunks)


def test_tokenizer_splits_identifiers_and_keeps_them_whole() -> None:
    assert tokenize("KubePodCrashLooping") == ["kube", "pod", "crash", "loop", "kubepodcrashlooping"]
    assert tokenize("node_filesystem_avail_bytes") == [
        "node",
        "filesystem",
        "avail",
        "byte",
        "nodefilesystemavailbytes",
    ]
    assert tokenize("checkout-api HTTP5xx") == ["checkout", "api", "checkoutapi", "http", "xx", "http5xx"]
    assert tokenize("the pods are crashing") == ["pod", "crash"]
    assert tokenize("NotReady node-7f") == ["not", "ready", "notready", "node", "node7f"]


def test_query_for_alert_uses_name_text_and_where_labels() -> None:
    query = query_for_alert(
        {"alertname": "KubePodCrashLooping", "namespace": "prod", "pod": "api-7d9f-x2", "severity": "warning"},
        {
            "summary": "Pod is crash looping.",
            "description": "Pod {{ $labels.namespace }}/{{ $labels.pod }} is crash looping.",
            "runbook_url": "https://runbooks.example/KubePodCrashLooping",
        },
    )
    assert query == "Kube Pod Crash Looping (KubePodCrashLooping). Pod is crash looping. namespace prod."


@pytest.mark.parametrize(
    ("alertname", "runbook"),
    [
        ("KubePodCrashLooping", "pod-crashloop.md"),
        ("PostgresqlTooManyConnections", "postgres-connections.md"),
        ("NodeFilesystemAlmostOutOfSpace", "disk-full.md"),
        ("ContainerOOMKilled", "out-of-memory.md"),
    ],
)
def test_alert_name_alone_finds_its_runbook(indexed: KnowledgeBase, alertname: str, runbook: str) -> None:
    hits = indexed.search(query_for_alert({"alertname": alertname}, {}), k=3)
    assert hits[0].source.endswith(runbook)
    assert hits[0].collection == "runbooks"


def test_paraphrase_finds_runbook_and_top3_are_distinct(indexed: KnowledgeBase) -> None:
    hits = indexed.search("containers keep restarting with back-off", k=3)
    assert hits[0].source.endswith("pod-crashloop.md")
    assert hits[0].title == "Pod crash looping"
    assert len({hit.source for hit in hits}) >= 2  # at most two chunks of one runbook
    assert len({hit.text for hit in hits}) == 3


def test_search_batch_equals_search(indexed: KnowledgeBase) -> None:
    queries = ["certificate expires soon", "DiskAlmostFull", "slow requests p99", "sorry, too many clients already"]
    assert indexed.search_batch(queries, k=4) == [indexed.search(q, k=4) for q in queries]


def test_reindex_replaces_changed_file_and_skips_unchanged(kb: KnowledgeBase, tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    runbook = books / "latency.md"
    shutil.copy(FIXTURES / "high-latency.md", runbook)
    first = kb.index_paths([books])
    count = kb.count("runbooks")
    assert (first.indexed, first.chunks) == (1, count)

    assert kb.index_paths([books]).unchanged == 1
    assert kb.count("runbooks") == count

    text = runbook.read_text().replace("Scale out the service, shed load", "Enable the zeppelin cache warmer")
    runbook.write_text(text)
    assert kb.index_paths([runbook]).indexed == 1
    assert kb.count("runbooks") == count
    texts = [hit.text for hit in kb.search("zeppelin cache warmer", k=count)]
    assert any("zeppelin cache warmer" in t for t in texts)
    assert not any("shed load" in t for t in texts)


def test_removed_sections_and_files_vanish(kb: KnowledgeBase, tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    shutil.copy(FIXTURES / "disk-full.md", books / "disk.md")
    shutil.copy(FIXTURES / "certificate-expiry.md", books / "cert.md")
    kb.index_paths([books])
    count = kb.count("runbooks")

    disk = books / "disk.md"
    disk.write_text(disk.read_text().split("## Mitigation")[0])
    kb.index_paths([books])
    assert kb.count("runbooks") == count - 1
    assert not any("crictl" in hit.text for hit in kb.search("prune images crictl", k=10))

    (books / "cert.md").unlink()
    stats = kb.index_paths([books])
    assert stats.removed == 1
    assert kb.count("runbooks") == count - 1 - len(chunk_markdown((FIXTURES / "certificate-expiry.md").read_text(), ""))
    assert all(hit.source.endswith("disk.md") for hit in kb.search("certificate", k=10))


def test_incidents_round_trip(kb: KnowledgeBase) -> None:
    incident = ResolvedIncident(
        incident_id="incident-abc",
        title="Checkout 5xx after deploy",
        summary="Checkout returned 502 for 12 minutes.",
        root_cause="Release 2.3.1 shipped a connection pool of size 2.",
        resolution="Rolled back to 2.3.0.",
        category="bad_deploy",
        services=["checkout"],
        resolved_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
    )
    kb.index_incident(incident)
    kb.index_incident(incident.model_copy(update={"resolution": "Rolled back to 2.3.0 and fixed the pool size."}))
    assert kb.count("incidents") == 1
    assert kb.count("runbooks") == 0
    hits = kb.search("checkout errors after a release", k=3, collection="incidents")
    assert [(h.source, h.title, h.collection) for h in hits] == [
        ("incident-abc", "Checkout 5xx after deploy", "incidents")
    ]
    assert "fixed the pool size" in hits[0].text
    assert "Root cause: Release 2.3.1" in hits[0].text


def test_cli_index_search_json_and_batch(cli_state: Path, tmp_path: Path, embedder: Embedder) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["knowledge", "index", str(FIXTURES)])
    assert result.exit_code == 0, result.output
    assert "6 file(s): 6 indexed" in result.output

    result = runner.invoke(app, ["knowledge", "search", "KubePodCrashLooping", "--k", "2", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 2
    assert set(hits[0]) == {"source", "title", "score", "text"}
    assert hits[0]["source"].endswith("pod-crashloop.md")

    queries = tmp_path / "queries.txt"
    queries.write_text("KubePodCrashLooping\n\ncertificate expiring\n")
    result = runner.invoke(app, ["knowledge", "search", "--batch", str(queries), "--k", "1"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line[0]["source"].rsplit("/", 1)[-1] for line in lines] == ["pod-crashloop.md", "certificate-expiry.md"]

    result = runner.invoke(app, ["knowledge", "stats"])
    assert result.exit_code == 0, result.output
    assert "runbooks" in result.output
    assert "incidents" in result.output

    result = runner.invoke(app, ["knowledge", "search", "x", "--collection", "nope"])
    assert result.exit_code == 2
    assert "unknown collection" in result.output


def test_locked_local_path_fails_clearly(cli_state: Path, embedder: Embedder) -> None:
    holder = KnowledgeBase(make_settings(cli_state), embedder)
    try:
        with pytest.raises(KnowledgeBaseLockedError, match="QDRANT_URL"):
            KnowledgeBase(make_settings(cli_state), embedder)
        result = CliRunner().invoke(app, ["knowledge", "stats"])
        assert result.exit_code == 1
        assert "in use by another process" in result.output
        assert "vigil up" in result.output
        assert "Traceback" not in result.output
    finally:
        holder.close()
    reopened = KnowledgeBase(make_settings(cli_state), embedder)
    reopened.close()


class NoModel(Embedder):
    """An embedder that fails the test if anything asks it for a vector or for its model."""

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> list[list[float]]:
        raise AssertionError(f"the embedding model was asked to embed {list(texts)[:2]}")

    @property
    def dimension(self) -> int:
        raise AssertionError("the embedding model was loaded")


def test_index_persists_across_processes_and_reading_needs_no_model(tmp_path: Path, embedder: Embedder) -> None:
    """What one knowledge base wrote, the next one on the path finds; counting, listing, re-indexing unchanged
    files and searching an empty collection never load the embedding model."""
    settings = make_settings(tmp_path / "state")
    books = tmp_path / "books"
    shutil.copytree(FIXTURES, books)
    with KnowledgeBase(settings, embedder) as kb:
        written = kb.index_paths([books])
        count = kb.count(RUNBOOKS)
    assert written.indexed == 6
    with KnowledgeBase(settings, NoModel()) as kb:
        assert kb.count(RUNBOOKS) == count
        assert sum(kb.sources().values()) == count
        again = kb.index_paths([books])
        assert (again.unchanged, again.indexed) == (6, 0)
        assert kb.search("checkout errors after a release", collection=INCIDENTS) == []
        assert kb.search("KubePodCrashLooping", mode="sparse")[0].source.endswith("pod-crashloop.md")
    with KnowledgeBase(settings, embedder) as kb:
        assert kb.search("containers keep restarting with back-off", k=1)[0].source.endswith("pod-crashloop.md")
