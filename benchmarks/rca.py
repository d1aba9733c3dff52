"""RCA time with and without the LLM: `python -m benchmarks.rca [--repeats N] [--llm-base-url URL --llm-model M]`.

For each hand-made incident bundle (`eval.incidentcorpus.handmade`, real-world log formats), medians over N runs
of: analysis, retrieval (hybrid, runbooks indexed once into a temporary local Qdrant), the deterministic RCA,
and — with an LLM server — the LLM RCA over the same evidence. The baseline, in the same process, is the
deterministic path (analysis + retrieval + RCA); the LLM figure is reported as a ratio to it. `--tiny-vllm`
starts the tests' vLLM (CPU, random-weight tiny Llama: it measures the client path and guided decoding, not a
real model's speed); it needs `scripts/setup-vllm.sh` first. On a 2-core machine that server's engine takes a
core, which slows the no-LLM stages of the same run: measure them in a run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from eval.incidentcorpus import handmade
from vigil.analysis.bundle import parse_bundle
from vigil.analysis.classify import default_classifier
from vigil.analysis.report import analyze
from vigil.knowledge.base import SHIPPED_RUNBOOKS
from vigil.rca.engine import deterministic_rca, llm_rca
from vigil.rca.llm import LLMError
from vigil.rca.offline import alert_records
from vigil.rca.retrieval import IncidentKnowledge
from vigil.settings import Settings


@contextmanager
def _timer(into: list[float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into.append((time.perf_counter() - start) * 1000)


@contextmanager
def tiny_vllm(workdir: Path) -> Iterator[str]:
    from tests.tiny_llama import build_tiny_llama
    from tests.vllm_server import start_vllm

    with start_vllm(build_tiny_llama(workdir / "tiny-llama"), "tiny") as base_url:
        yield base_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runbooks", type=Path, default=SHIPPED_RUNBOOKS)
    parser.add_argument("--llm-base-url", default=None, help="OpenAI-compatible server (e.g. vLLM)")
    parser.add_argument("--llm-model", default="default")
    parser.add_argument("--tiny-vllm", action="store_true", help="start the tests' tiny CPU vLLM and use it")
    args = parser.parse_args(argv)
    console = Console()
    cases = handmade()
    rows: list[list[str]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-rca-")))
        base_url, model = args.llm_base_url, args.llm_model
        if args.tiny_vllm:
            with console.status("starting the tiny vLLM"):
                base_url, model = stack.enter_context(tiny_vllm(tmp)), "tiny"
        settings = Settings.model_validate(
            {
                "state_dir": tmp / "state",
                "runbooks_dir": args.runbooks,
                "llm_base_url": base_url,
                "llm_model": model,
                "llm_max_tokens": 1500,
                "llm_context_tokens": 2000 if args.tiny_vllm else 4096,
            }
        )
        knowledge = IncidentKnowledge(settings)
        stack.callback(knowledge.close)
        indexing: list[float] = []
        with console.status("indexing runbooks"), _timer(indexing):
            knowledge.base()
        console.print(f"runbooks indexed in {indexing[0] / 1000:.1f} s")
        classifier = default_classifier()
        with Progress(console=console) as progress:
            task = progress.add_task("incidents", total=len(cases) * args.repeats)
            for case in cases:
                bundle = parse_bundle(case["bundle"])
                alerts = alert_records(bundle)
                timings: dict[str, list[float]] = {"analysis": [], "retrieval": [], "rca": [], "llm": []}
                llm_sources: list[str] = []
                for _ in range(args.repeats):
                    with _timer(timings["analysis"]):
                        report = analyze(bundle, classifier=classifier)
                    with _timer(timings["retrieval"]):
                        runbooks, incidents = knowledge.retrieve(alerts, report)
                    with _timer(timings["rca"]):
                        det = deterministic_rca(report, runbooks, incidents)
                    if base_url:
                        with _timer(timings["llm"]):
                            try:
                                title = alerts[0].labels.get("alertname", "incident")
                                llm_sources.append(asyncio.run(llm_rca(settings, det, title)).source)
                            except LLMError as exc:
                                llm_sources.append(f"error: {exc}")
                    progress.advance(task)
                med = {key: statistics.median(v) for key, v in timings.items() if v}
                baseline = med["analysis"] + med["retrieval"] + med["rca"]
                llm = f"{med['llm']:.0f} ms ({med['llm'] / baseline:.1f}x)" if "llm" in med else "-"
                rows.append(
                    [
                        case["scenario"],
                        f"{med['analysis']:.0f}",
                        f"{med['retrieval']:.0f}",
                        f"{med['rca']:.1f}",
                        f"{baseline:.0f}",
                        llm,
                        ", ".join(sorted(set(llm_sources))) or "-",
                    ]
                )
    table = Table(title=f"RCA time per incident, medians of {args.repeats} (ms)")
    for column in (
        "incident",
        "analysis",
        "retrieval",
        "deterministic RCA",
        "no-LLM total",
        "LLM RCA (x no-LLM)",
        "LLM outcome",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
