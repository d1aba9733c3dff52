"""End-to-end analysis time (`vigil.analysis.report.analyze`) and the normaliser's alone, for a generated
100k-line bundle with a fault (a database outage in mixed formats: JSON, logfmt, Python logging, syslog),
median of N runs, against a baseline of drain3's `TemplateMiner` over the same raw lines in the same process.
`vigil bench analyze`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence

from eval.incidentcorpus import big_bundle
from vigil.analysis.bundle import parse_bundle
from vigil.analysis.normalise import normalise
from vigil.analysis.report import analyze


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def drain_baseline(messages: Sequence[str]) -> Callable[[], object] | None:
    try:
        from drain3 import TemplateMiner as DrainMiner  # type: ignore[import-untyped]
    except ImportError:
        return None
    logging.getLogger("drain3").setLevel(logging.ERROR)

    def run() -> int:
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # "config file not found"
            miner = DrainMiner()
        for message in messages:
            miner.add_log_message(message)
        return len(miner.drain.clusters)

    return run


def run(lines: int, repeats: int, seed: int) -> dict[str, object]:
    data = big_bundle(lines, seed=seed)
    bundle = parse_bundle(data)
    report = analyze(bundle)  # warm-up, and the result to report
    ours = _median_ms(lambda: analyze(bundle), repeats)
    lines_only = [r.line for r in bundle.logs]
    normalise_ms = _median_ms(lambda: sum(1 for _ in normalise(lines_only)), repeats)
    baseline = drain_baseline([r.line for r in bundle.logs])
    drain_ms = _median_ms(baseline, repeats) if baseline is not None else None
    return {
        "lines": lines,
        "repeats": repeats,
        "analyze_ms": round(ours, 1),
        "analyze_lines_per_s": round(lines / ours * 1000),
        "normalise_ms": round(normalise_ms, 1),
        "normalise_lines_per_s": round(lines / normalise_ms * 1000),
        "drain3_ms": None if drain_ms is None else round(drain_ms, 1),
        "ratio_analyze_over_drain3": None if drain_ms is None else round(ours / drain_ms, 2),
        "category": report.category.value,
        "component": report.root_cause.component,
        "findings": [f.id for f in report.findings],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.lines, args.repeats, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
