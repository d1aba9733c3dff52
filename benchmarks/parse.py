"""`python -m benchmarks.parse` (or `vigil bench parse`): template mining on the generated, labelled corpus.

Per corpus system (see ``eval/logcorpus.py``) and overall, in one process on one core:

- grouping accuracy (GA, as in the Loghub paper) of Vigil's :class:`TemplateMiner` and of drain3's
  ``TemplateMiner()`` with its default configuration, both fed the same messages (Loghub's "Content");
  ours is scored with final ids (templates merged later resolve to the surviving id, like Loghub scores Drain's
  final clusters) and, in the "online" column, with the ids as ``add`` returned them at the time;
- lines/s of both miners (median of ``--repeats`` runs, a fresh miner each run);
- "raw lines" GA: what ``vigil logs parse`` does, the raw lines (headers and all) through :func:`normalise`, the
  event messages through our miner;
- lines/s of :func:`normalise` alone on the raw lines (header, level, timestamp, logger extraction).

A "mixed" row feeds every system's lines, interleaved, to ONE miner: the one-configuration-for-every-source case.
The corpus is generated, so it is easier than real Loghub data; the figures are a regression guard.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from eval.logcorpus import LabelledLine, corpus, grouping_accuracy
from vigil.analysis.normalise import normalise
from vigil.analysis.templates import TemplateMiner


@dataclass
class Row:
    name: str
    lines: int
    templates: int
    ga_ours: float
    ga_online: float
    ga_drain: float | None
    ga_e2e: float
    rate_ours: float
    rate_drain: float | None
    rate_normalise: float | None


def mine_ours(messages: Sequence[str]) -> tuple[list[str], list[str], int]:
    """(final ids, ids as returned online, template count) of one fresh miner over ``messages``."""
    miner = TemplateMiner()
    online = [miner.add(m).template_id for m in messages]
    return [miner.resolve(t) for t in online], online, len(miner)


def mine_raw(raws: Sequence[str]) -> list[str]:
    """What `vigil logs parse` does: raw lines -> normalise -> miner; one final id per input line."""
    miner = TemplateMiner()
    ids: list[str] = []
    for event in normalise(raws):
        template_id = miner.add(event.message).template_id
        ids.extend([template_id] * event.line_count)
    return [miner.resolve(t) for t in ids]


def mine_drain(messages: Sequence[str]) -> list[int] | None:
    try:
        from drain3 import TemplateMiner as DrainMiner  # type: ignore[import-untyped]
    except ImportError:
        return None
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # "config file not found"
        miner = DrainMiner()
    return [int(miner.add_log_message(m)["cluster_id"]) for m in messages]


def _rate(run: Callable[[], object], n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def _drain_available() -> bool:
    return importlib.util.find_spec("drain3") is not None


def evaluate(name: str, lines: Sequence[LabelledLine], repeats: int, with_normalise: bool = True) -> Row:
    messages = [line.message for line in lines]
    truth = [line.label for line in lines]
    final, online, count = mine_ours(messages)
    drained = mine_drain(messages)
    has_drain = drained is not None
    raws = [line.raw for line in lines]
    return Row(
        name=name,
        lines=len(lines),
        templates=count,
        ga_ours=grouping_accuracy(truth, final),
        ga_online=grouping_accuracy(truth, online),
        ga_drain=grouping_accuracy(truth, drained) if drained is not None else None,
        ga_e2e=grouping_accuracy(truth, mine_raw(raws)),
        rate_ours=_rate(lambda: mine_ours(messages), len(messages), repeats),
        rate_drain=_rate(lambda: mine_drain(messages), len(messages), repeats) if has_drain else None,
        rate_normalise=_rate(lambda: sum(1 for _ in normalise(raws)), len(raws), repeats) if with_normalise else None,
    )


def _interleave(systems: dict[str, list[LabelledLine]]) -> list[LabelledLine]:
    out: list[LabelledLine] = []
    columns = list(systems.values())
    for i in range(max(len(c) for c in columns)):
        out.extend(c[i] for c in columns if i < len(c))
    return out


def run(lines: int, repeats: int, seed: int) -> list[Row]:
    logging.getLogger("drain3").setLevel(logging.ERROR)
    systems = corpus(lines, seed)
    rows = [evaluate(name, items, repeats) for name, items in systems.items()]
    total = sum(r.lines for r in rows)

    def weighted(values: list[float | None]) -> float | None:
        if any(v is None for v in values):
            return None
        return sum((v or 0.0) * r.lines for v, r in zip(values, rows, strict=True)) / total

    def overall_rate(values: list[float | None]) -> float | None:
        if any(v is None for v in values):
            return None
        return total / sum(r.lines / (v or 1.0) for v, r in zip(values, rows, strict=True))

    rows.append(
        Row(
            name="overall (mean)",
            lines=total,
            templates=sum(r.templates for r in rows),
            ga_ours=weighted([r.ga_ours for r in rows]) or 0.0,
            ga_online=weighted([r.ga_online for r in rows]) or 0.0,
            ga_drain=weighted([r.ga_drain for r in rows]),
            ga_e2e=weighted([r.ga_e2e for r in rows]) or 0.0,
            rate_ours=overall_rate([r.rate_ours for r in rows]) or 0.0,
            rate_drain=overall_rate([r.rate_drain for r in rows]),
            rate_normalise=overall_rate([r.rate_normalise for r in rows]),
        )
    )
    mixed = _interleave(systems)
    rows.append(evaluate("mixed (one miner)", mixed, repeats, with_normalise=False))
    return rows


def render(rows: list[Row], console: Console) -> None:
    table = Table(title="Template mining on the generated corpus (eval/logcorpus.py), one process, one core")
    for column in (
        "system",
        "lines",
        "templates",
        "GA ours",
        "GA ours online",
        "GA drain3",
        "GA ours raw lines",
        "lines/s ours",
        "lines/s drain3",
        "lines/s normalise",
    ):
        table.add_column(column, justify="left" if column == "system" else "right")

    def num(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    for row in rows:
        table.add_row(
            row.name,
            str(row.lines),
            str(row.templates),
            num(row.ga_ours, ".3f"),
            num(row.ga_online, ".3f"),
            num(row.ga_drain, ".3f"),
            num(row.ga_e2e, ".3f"),
            num(row.rate_ours, ",.0f"),
            num(row.rate_drain, ",.0f"),
            num(row.rate_normalise, ",.0f"),
        )
    console.print(table)
    if not _drain_available():
        console.print("drain3 is not installed (pip install drain3, or the dev extra): no baseline figures.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2000, help="generated lines per system")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs; figures are medians")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed")
    args = parser.parse_args(argv)
    rows = run(args.lines, args.repeats, args.seed)
    render(rows, Console(width=max(Console().width, 170)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
