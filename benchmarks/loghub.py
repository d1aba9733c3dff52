"""`python -m benchmarks.loghub` (or `vigil bench loghub`): Vigil on public Loghub data, next to the baselines.

In one process, on the material in ``eval/loghub`` (provenance and the tuning/held-out split in its README):

- **templates**: grouping accuracy (GA, Loghub's definition) of Vigil's :class:`TemplateMiner` (one default
  configuration, one fresh miner per system, final ids) and of drain3's ``TemplateMiner()`` with its defaults, on
  the same messages of the 16 Loghub-2k samples; the mean over all 16, over the 8 tuning systems and over the 8
  held-out systems nobody tuned on;
- **speed**: lines/s of both miners on the generated 32k-line corpus (``eval/logcorpus.py``, 16 x 2000 lines,
  one miner for all of it), median of ``--repeats`` runs (CPU time of this process), and the ratio;
- **sessions**: precision/recall/F1 on real, labelled HDFS block sessions of Vigil's :class:`SessionModel` and
  of the PCA baseline (``eval/loghub/pca.py``), both fitted on normal training sessions only and scored on a
  disjoint test part; also the false-positive rate and the precision the same detector would have at HDFS_v1's
  real anomaly rate (2.93%), since the shipped test part is about half anomalous.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from eval.logcorpus import corpus
from eval.loghub.data import HELD_OUT_SYSTEMS, SYSTEMS, TUNING_SYSTEMS, load_hdfs_sessions, load_system
from eval.loghub.grouping import grouping_accuracy
from eval.loghub.pca import PcaDetector
from eval.sessioncorpus import prf
from vigil.analysis.sessions import SessionModel
from vigil.analysis.templates import TemplateMiner

HDFS_ANOMALY_RATE = 16838 / 575061  # HDFS_v1: anomalous blocks / all blocks


@dataclass
class SystemRow:
    name: str
    tuned: bool
    lines: int
    ga_ours: float
    ga_drain: float


@dataclass
class SessionRow:
    name: str
    precision: float
    recall: float
    f1: float
    false_positive_rate: float
    precision_at_base_rate: float


@dataclass
class Report:
    systems: list[SystemRow]
    rate_ours: float
    rate_drain: float
    speed_lines: int
    sessions: list[SessionRow]
    train_sessions: int
    test_normal: int
    test_anomalous: int

    def mean(self, names: Sequence[str], attr: str) -> float:
        values = [float(getattr(r, attr)) for r in self.systems if r.name in names]
        return sum(values) / len(values)


def mine_ours(messages: Sequence[str]) -> list[str]:
    miner = TemplateMiner()
    ids = [miner.add(m).template_id for m in messages]
    return [miner.resolve(t) for t in ids]


def mine_drain(messages: Sequence[str]) -> list[int]:
    from drain3 import TemplateMiner as DrainMiner  # type: ignore[import-untyped]

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # "config file not found"
        miner = DrainMiner()
    return [int(miner.add_log_message(m)["cluster_id"]) for m in messages]


def _rate(run: Callable[[], object], n: int, repeats: int) -> float:
    """Lines per CPU second of this process (median of ``repeats``): on a shared machine wall-clock time measures
    the neighbours too."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return n / statistics.median(times)


def _session_row(name: str, truth: Sequence[bool], predicted: Sequence[bool]) -> SessionRow:
    precision, recall, f1 = prf(truth, predicted)
    normals = [p for t, p in zip(truth, predicted, strict=True) if not t]
    fpr = sum(normals) / len(normals) if normals else 0.0
    flagged = recall * HDFS_ANOMALY_RATE + fpr * (1 - HDFS_ANOMALY_RATE)
    at_rate = recall * HDFS_ANOMALY_RATE / flagged if flagged else 0.0
    return SessionRow(name, precision, recall, f1, fpr, at_rate)


def run(repeats: int, progress: Progress | None = None) -> Report:
    logging.getLogger("drain3").setLevel(logging.ERROR)
    task = progress.add_task("Loghub templates", total=len(SYSTEMS) + 2) if progress else None

    def step(description: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, advance=1, description=description)

    systems = []
    for name in SYSTEMS:
        messages = load_system(name)
        truth = [m.event_id for m in messages]
        contents = [m.content for m in messages]
        systems.append(
            SystemRow(
                name=name,
                tuned=name in TUNING_SYSTEMS,
                lines=len(messages),
                ga_ours=grouping_accuracy(truth, mine_ours(contents)),
                ga_drain=grouping_accuracy(truth, mine_drain(contents)),
            )
        )
        step(f"templates: {name}")
    generated = [line.message for lines in corpus(2000).values() for line in lines]
    rate_ours = _rate(lambda: mine_ours(generated), len(generated), repeats)
    rate_drain = _rate(lambda: mine_drain(generated), len(generated), repeats)
    step("speed")
    hdfs = load_hdfs_sessions()
    ours = SessionModel().fit(hdfs.train)
    ours_predicted = [ours.score(str(i), events).anomalous for i, events in enumerate(hdfs.test)]
    pca = PcaDetector().fit(hdfs.train)
    step("sessions")
    return Report(
        systems=systems,
        rate_ours=rate_ours,
        rate_drain=rate_drain,
        speed_lines=len(generated),
        sessions=[
            _session_row("Vigil SessionModel", hdfs.test_anomalous, ours_predicted),
            _session_row("PCA (plain, Q-statistic)", hdfs.test_anomalous, pca.predict(hdfs.test)),
        ],
        train_sessions=len(hdfs.train),
        test_normal=hdfs.test_anomalous.count(False),
        test_anomalous=hdfs.test_anomalous.count(True),
    )


def render(report: Report, console: Console) -> None:
    table = Table(
        title="Template grouping accuracy on public Loghub-2k samples (eval/loghub), one default configuration"
    )
    for column in ("system", "split", "lines", "GA Vigil", "GA drain3"):
        table.add_column(column, justify="left" if column in ("system", "split") else "right")
    for row in report.systems:
        split = "tuning" if row.tuned else "held-out"
        table.add_row(row.name, split, str(row.lines), f"{row.ga_ours:.3f}", f"{row.ga_drain:.3f}")
    for label, names in (
        ("mean, all 16", SYSTEMS),
        ("mean, 8 tuning", TUNING_SYSTEMS),
        ("mean, 8 held-out", HELD_OUT_SYSTEMS),
    ):
        table.add_row(
            label,
            "",
            str(sum(r.lines for r in report.systems if r.name in names)),
            f"{report.mean(names, 'ga_ours'):.3f}",
            f"{report.mean(names, 'ga_drain'):.3f}",
        )
    console.print(table)
    console.print(
        f"Mining speed on the generated {report.speed_lines:,}-line corpus, one miner, lines per CPU second: "
        f"Vigil {report.rate_ours:,.0f} lines/s, drain3 {report.rate_drain:,.0f} lines/s "
        f"(x{report.rate_ours / report.rate_drain:.2f})"
    )
    sessions = Table(
        title=(
            f"Real HDFS block sessions: fitted on {report.train_sessions} normal sessions, tested on "
            f"{report.test_normal} normal + {report.test_anomalous} anomalous"
        )
    )
    for column in ("detector", "precision", "recall", "F1", "false-positive rate", "precision at 2.93% anomalies"):
        sessions.add_column(column, justify="left" if column == "detector" else "right")
    for detector in report.sessions:
        sessions.add_row(
            detector.name,
            f"{detector.precision:.3f}",
            f"{detector.recall:.3f}",
            f"{detector.f1:.3f}",
            f"{detector.false_positive_rate:.4f}",
            f"{detector.precision_at_base_rate:.3f}",
        )
    console.print(sessions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timing runs; speeds are medians")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 120))
    with Progress(console=console, transient=True) as progress:
        report = run(args.repeats, progress)
    render(report, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
