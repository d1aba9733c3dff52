"""`python -m eval.retrieval.evaluate [--k 3]`: runbook retrieval for alerts, hybrid vs dense-only vs sparse-only.

Indexes the runbooks (default: the repo's `runbooks/`) into a temporary local Qdrant, turns each alert of
`eval/retrieval/alerts.jsonl` into a query with `query_for_alert`, and counts an alert as a hit@n when its runbook
is among the first n hits of `KnowledgeBase.search(query, k)`, as the incident workflow calls it (at most
`--per-source` chunks of one runbook among them). One line per alert: `{"alert": {"labels": {...}, "annotations":
{...}}, "expr": "...", "source": "rule-set name", "runbook": "runbooks/sre/x.md"}` (`expr` is not used: an alert
as Alertmanager delivers it carries no expression).

`--hide-alert-names` indexes a copy of the runbooks with every alert name of the set removed, to measure
retrieval for runbooks that never name the alerts they deal with (ours name them in their titles, as public
runbook sites do).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.table import Table

from vigil.knowledge.base import INSTALL_ROOT as REPO
from vigil.knowledge.base import SHIPPED_RUNBOOKS, KnowledgeBase, SearchMode
from vigil.knowledge.models import KnowledgeHit
from vigil.knowledge.query import query_for_alert
from vigil.settings import Settings

ALERTS = REPO / "eval" / "retrieval" / "alerts.jsonl"
MODES: tuple[SearchMode, ...] = get_args(SearchMode)


@dataclass(frozen=True)
class Case:
    query: str
    source: str  # rule set the alert comes from
    runbook: Path  # resolved
    alertname: str


@dataclass
class Outcome:
    case: Case
    ranked: list[Path]  # the runbook of each hit, best first

    def rank(self) -> int | None:
        return self.ranked.index(self.case.runbook) + 1 if self.case.runbook in self.ranked else None


def load_cases(path: Path) -> list[Case]:
    cases: list[Case] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            labels, annotations = row["alert"].get("labels", {}), row["alert"].get("annotations", {})
            runbook = (REPO / row["runbook"]).resolve()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SystemExit(f"{path}:{number}: not an evaluation case: {exc}") from None
        query = query_for_alert(labels, annotations)
        cases.append(Case(query, str(row.get("source", "?")), runbook, str(labels.get("alertname", ""))))
    return cases


def _runbooks(hits: Sequence[KnowledgeHit], indexed: Path, runbooks: Path) -> list[Path]:
    """The runbook of each hit, mapped back from the indexed folder (a copy with `--hide-alert-names`)."""
    found = [Path(hit.source) if Path(hit.source).is_absolute() else REPO / hit.source for hit in hits]
    return [runbooks.resolve() / path.resolve().relative_to(indexed.resolve()) for path in found]


def without_alert_names(runbooks: Path, names: Sequence[str], into: Path) -> Path:
    """A copy of the runbooks with every alert name removed (whole identifiers, any case)."""
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True)) + r")\b")
    copy = into / "runbooks"
    shutil.copytree(runbooks, copy)
    for path in copy.rglob("*.md"):
        path.write_text(pattern.sub("", path.read_text(encoding="utf-8")), encoding="utf-8")
    return copy


def run(
    cases: Sequence[Case], runbooks: Path, k: int, per_source: int, console: Console, *, hide_names: bool = False
) -> dict[SearchMode, list[Outcome]]:
    """Outcomes per search mode, `k` hits a query."""
    with tempfile.TemporaryDirectory(prefix="vigil-eval-") as tmp:
        indexed = (
            without_alert_names(runbooks, [c.alertname for c in cases if c.alertname], Path(tmp))
            if (hide_names)
            else runbooks
        )
        settings = Settings(state_dir=Path(tmp)).model_copy(update={"qdrant_url": None})
        with KnowledgeBase(settings) as kb:
            kb.max_chunks_per_source = per_source
            with console.status("indexing runbooks"):
                stats = kb.index_paths([indexed])
            console.print(f"indexed {stats.files} runbooks, {stats.chunks} chunks from {indexed}")
            queries = [case.query for case in cases]
            results: dict[SearchMode, list[Outcome]] = {}
            for mode in MODES:
                hits = kb.search_batch(queries, k=k, collection="runbooks", mode=mode)
                results[mode] = [Outcome(c, _runbooks(h, indexed, runbooks)) for c, h in zip(cases, hits, strict=True)]
    return results


def _rate(outcomes: Sequence[Outcome], n: int) -> float:
    return sum(1 for o in outcomes if (rank := o.rank()) is not None and rank <= n) / max(len(outcomes), 1)


def render(results: dict[SearchMode, list[Outcome]], k: int, console: Console) -> None:
    table = Table(title=f"Runbook retrieval: right runbook in the first hit / the first {k} hits")
    table.add_column("rule set")
    table.add_column("alerts", justify="right")
    for mode in MODES:
        table.add_column(f"{mode} hit@1", justify="right")
        table.add_column(f"{mode} hit@{k}", justify="right")
    by_source: dict[str, list[int]] = defaultdict(list)
    hybrid = results["hybrid"]
    for index, outcome in enumerate(hybrid):
        by_source[outcome.case.source].append(index)
    groups = [(name, indexes) for name, indexes in sorted(by_source.items())]
    groups.append(("overall", list(range(len(hybrid)))))
    for name, indexes in groups:
        cells = [name, str(len(indexes))]
        for mode in MODES:
            picked = [results[mode][i] for i in indexes]
            cells += [f"{_rate(picked, 1):.3f}", f"{_rate(picked, k):.3f}"]
        table.add_row(*cells, style="bold" if name == "overall" else None)
    console.print(table)
    late = [o for o in hybrid if (rank := o.rank()) is not None and 1 < rank <= k]
    if late:
        console.print(f"hybrid: {len(late)} alert(s) with the right runbook in the top {k} but not first")
        for outcome in late:
            console.print(
                f"  {outcome.case.alertname} ({outcome.case.source}) wants {_short(outcome.case.runbook)} "
                f"at rank {outcome.rank()}, first is {_short(outcome.ranked[0])}",
                highlight=False,
                soft_wrap=True,
            )
    for mode in MODES:
        misses = [o for o in results[mode] if (rank := o.rank()) is None or rank > k]
        if not misses:
            continue
        console.print(f"[bold]{mode}: {len(misses)} miss(es) at {k}[/bold]")
        for outcome in misses:
            got = ", ".join(_short(p) for p in outcome.ranked[:k])
            console.print(
                f"  {outcome.case.alertname} ({outcome.case.source}) wants {_short(outcome.case.runbook)}, "
                f"got {got or 'nothing'}\n    query: {outcome.case.query}",
                highlight=False,
                soft_wrap=True,
            )


def _short(path: Path) -> str:
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=3, help="hit@k besides hit@1 (default 3)")
    parser.add_argument("--alerts", type=Path, default=ALERTS, help="evaluation cases (JSON lines)")
    parser.add_argument("--runbooks", type=Path, default=SHIPPED_RUNBOOKS, help="runbook folder to index")
    parser.add_argument(
        "--per-source",
        type=int,
        default=KnowledgeBase.max_chunks_per_source,
        help=f"most chunks of one runbook among the hits (default {KnowledgeBase.max_chunks_per_source})",
    )
    parser.add_argument(
        "--hide-alert-names", action="store_true", help="index the runbooks with every alert name removed"
    )
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 when hybrid hit@k is below this")
    args = parser.parse_args(argv)
    console = Console()
    cases = load_cases(args.alerts)
    if not cases:
        console.print(f"no cases in {args.alerts}")
        return 1
    results = run(cases, args.runbooks, args.k, args.per_source, console, hide_names=args.hide_alert_names)
    render(results, args.k, console)
    return 1 if _rate(results["hybrid"], args.k) < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())
