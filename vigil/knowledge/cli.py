"""`vigil knowledge ...`: index runbooks, search the knowledge base, show what it holds."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vigil.knowledge.models import COLLECTIONS, RUNBOOKS, KnowledgeHit
from vigil.settings import get_settings

knowledge_app = typer.Typer(no_args_is_help=True, help="The knowledge base: runbooks and resolved incidents.")

if TYPE_CHECKING:  # imported lazily below: keeps Qdrant and torch out of `vigil --help`
    from vigil.knowledge.base import KnowledgeBase


@contextmanager
def _open() -> Iterator[KnowledgeBase]:
    """The knowledge base of the current settings; a user-fixable problem exits 1 with its message."""
    from vigil.knowledge.base import KnowledgeBase, KnowledgeBaseError

    try:
        kb = KnowledgeBase.open(get_settings())
    except KnowledgeBaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        yield kb
    except KnowledgeBaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        kb.close()


def _hit_json(hit: KnowledgeHit) -> dict[str, object]:
    return {"source": hit.source, "title": hit.title, "score": hit.score, "text": hit.text}


def _check_collection(collection: str) -> None:
    if collection not in COLLECTIONS:
        typer.echo(f"error: unknown collection {collection!r}: use one of {', '.join(COLLECTIONS)}", err=True)
        raise typer.Exit(2)


@knowledge_app.command("index")
def index(paths: list[Path] = typer.Argument(..., help="Runbook files or folders (.md, .markdown, .txt).")) -> None:
    """Index runbooks: changed files are replaced, unchanged ones skipped, files gone from a folder removed."""
    from vigil.knowledge.base import KnowledgeBaseError, expand_paths

    try:
        total = len(expand_paths(paths))
    except KnowledgeBaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    console = Console(stderr=True)
    with _open() as kb:
        columns = (
            TextColumn("indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("", total=total)
            stats = kb.index_paths(paths, progress=lambda source: progress.update(task, advance=1, description=source))
        runbooks = kb.count(RUNBOOKS)
    typer.echo(
        f"{stats.files} file(s): {stats.indexed} indexed ({stats.chunks} chunks), {stats.unchanged} unchanged, "
        f"{stats.removed} removed; the runbooks collection holds {runbooks} chunks"
    )


def _read_queries(batch: str) -> list[str]:
    text = sys.stdin.read() if batch == "-" else Path(batch).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _print_table(query: str, hits: Sequence[KnowledgeHit]) -> None:
    table = Table(title=f"{query}", title_justify="left", show_lines=True)
    for column in ("#", "score", "source", "text"):
        table.add_column(column, overflow="fold", justify="right" if column in {"#", "score"} else "left")
    for rank, hit in enumerate(hits, start=1):
        snippet = hit.text if len(hit.text) <= 300 else hit.text[:297] + "..."
        table.add_row(str(rank), f"{hit.score:.3f}", hit.source, snippet)
    Console().print(table)


@knowledge_app.command("search")
def search(
    query: str | None = typer.Argument(None, help="What to look for (omit with --batch)."),
    k: int = typer.Option(5, "--k", "-k", min=1, help="Hits per query."),
    as_json: bool = typer.Option(False, "--json", help='A JSON list of {"source", "title", "score", "text"}.'),
    batch: str | None = typer.Option(
        None, "--batch", help="File of queries, one per line ('-': stdin); writes one JSON list per line."
    ),
    collection: str = typer.Option(RUNBOOKS, "--collection", help="runbooks or incidents."),
) -> None:
    """Hybrid (dense + lexical) search of the knowledge base."""
    _check_collection(collection)
    if (query is None) == (batch is None):
        typer.echo("error: give a QUERY or --batch FILE (not both)", err=True)
        raise typer.Exit(2)
    queries = [query] if query is not None else _read_queries(batch or "-")
    with _open() as kb:
        results = kb.search_batch(queries, k=k, collection=collection)
    if batch is not None:
        for hits in results:
            typer.echo(json.dumps([_hit_json(hit) for hit in hits]))
    elif as_json:
        typer.echo(json.dumps([_hit_json(hit) for hit in results[0]], indent=2))
    else:
        _print_table(queries[0], results[0])


@knowledge_app.command("stats")
def stats() -> None:
    """Where the knowledge base is, what each collection holds, and the indexed runbooks."""
    with _open() as kb:
        counts = {name: kb.count(name) for name in COLLECTIONS}
        sources = kb.sources()
        location = kb.location
        model = kb.embedder.model_name
    console = Console()
    console.print(f"location: {location}\nembedding model: {model}")
    table = Table("collection", "points")
    for name, count in counts.items():
        table.add_row(name, str(count))
    console.print(table)
    if sources:
        runbooks = Table("runbook", "chunks", title=f"{len(sources)} runbook(s)", title_justify="left")
        for source, chunks in sources.items():
            runbooks.add_row(source, str(chunks))
        console.print(runbooks)
