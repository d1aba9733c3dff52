"""Synthetic evaluation of `vigil.analysis.traces.blame`: random call trees (services calling services and shared
databases), jittered latency, background errors, error propagation, clock skew and dropped spans, with one fault
injected at the onset into a random service or database (its own errors, or its own slowness). Reports how often
the culprit is ranked first and in the top three.

    python -m eval.traces [--runs 60] [--seed 1000]

`blame` was written before this evaluation. One change followed it: the failures of seeds 0-59 (jitter in the
entry service's self time outranking a small error fault) made the latency score count only calls slower than
their p95 before the onset. Seeds 1000-1059 had been run once before that change; 2000-2059 only after it. The
scenarios are still the author's model of a fault: read the figures as a regression guard and a sanity check, not
as accuracy on real incidents.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vigil.analysis.traces import Span, SpanKind, blame

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REQUESTS = 150
"""Requests before the onset and again after it, one a second."""
ONSET = T0 + timedelta(seconds=REQUESTS)
DATABASES = 3
PROPAGATION = 0.9
"""Chance that a caller fails when a callee it called failed."""


@dataclass(frozen=True)
class Regime:
    name: str
    skew_ms: float = 0.0
    drop: float = 0.0
    background: float = 0.0
    small: bool = False
    """Small faults: 5-15% errors, or +50-200% self time (else 20-60% errors, or 5-50x self time)."""


REGIMES = (
    Regime("clean"),
    Regime("noisy", skew_ms=2.0, drop=0.05, background=0.01),
    Regime("harsh", skew_ms=5.0, drop=0.15, background=0.03),
    Regime("small faults", skew_ms=3.0, drop=0.10, background=0.02, small=True),
)


@dataclass
class Scenario:
    rng: random.Random
    regime: Regime
    services: list[str]
    calls: dict[str, list[str]]
    self_ms: dict[str, float]
    culprit: str
    fault: str
    skew: dict[str, float]
    spans: list[Span] = field(default_factory=list)
    next_id: int = 0

    def span_id(self) -> str:
        self.next_id += 1
        return f"{self.next_id:016x}"

    def faulty(self, node: str, late: bool) -> bool:
        return late and node == self.culprit

    def error_rate(self) -> float:
        return self.rng.uniform(0.05, 0.15) if self.regime.small else self.rng.uniform(0.2, 0.6)

    def slower(self, base_ms: float) -> float:
        return base_ms * (self.rng.uniform(0.5, 2.0) if self.regime.small else self.rng.uniform(4.0, 49.0))

    def emit(
        self,
        trace: str,
        span_id: str,
        parent: str | None,
        service: str,
        kind: SpanKind,
        start: float,
        end: float,
        error: bool,
        attributes: dict[str, str],
    ) -> None:
        if parent is not None and kind is SpanKind.CLIENT and self.rng.random() < self.regime.drop:
            return
        shift = self.skew[service]
        self.spans.append(
            Span(
                trace_id=trace,
                span_id=span_id,
                parent_span_id=parent,
                service=service,
                name="op",
                kind=kind,
                start=T0 + timedelta(milliseconds=start + shift),
                end=T0 + timedelta(milliseconds=end + shift),
                error=error,
                attributes=attributes,
            )
        )

    def query(
        self, trace: str, parent: str, service: str, database: str, start: float, late: bool
    ) -> tuple[float, bool]:
        duration = self.self_ms[database] * self.rng.lognormvariate(0, 0.3)
        error = self.rng.random() < self.regime.background
        if self.faulty(database, late):
            if self.fault == "latency":
                duration += self.slower(self.self_ms[database])
            else:
                error = error or self.rng.random() < self.error_rate()
        attributes = {"db.system": "postgresql", "server.address": database}
        self.emit(trace, self.span_id(), parent, service, SpanKind.CLIENT, start, start + duration, error, attributes)
        return start + duration, error

    def serve(self, trace: str, parent: str | None, service: str, start: float, late: bool) -> tuple[float, bool]:
        """One server span of `service` and everything below it; its end and whether it failed."""
        own_id = self.span_id()
        now = start + self.self_ms[service] * self.rng.lognormvariate(0, 0.3) / 2
        callee_failed = False
        for callee in self.calls[service]:
            if callee.startswith("db"):
                now, failed = self.query(trace, own_id, service, callee, now, late)
            else:
                client_id = self.span_id()
                end, failed = self.serve(trace, client_id, callee, now + 0.3, late)
                attributes = {"peer.service": callee}
                self.emit(trace, client_id, own_id, service, SpanKind.CLIENT, now, end + 0.3, failed, attributes)
                now = end + 0.3
            callee_failed = callee_failed or failed
        now += self.self_ms[service] * self.rng.lognormvariate(0, 0.3) / 2
        own_error = self.rng.random() < self.regime.background
        if self.faulty(service, late):
            if self.fault == "latency":
                now += self.slower(self.self_ms[service])
            else:
                own_error = own_error or self.rng.random() < self.error_rate()
        error = own_error or (callee_failed and self.rng.random() < PROPAGATION)
        self.emit(trace, own_id, parent, service, SpanKind.SERVER, start, now, error, {})
        return now, error


def scenario(seed: int, regime: Regime) -> Scenario:
    rng = random.Random(seed)
    services = [f"svc{i}" for i in range(rng.randint(3, 8))]
    calls: dict[str, list[str]] = {service: [] for service in services}
    for i, service in enumerate(services[1:], 1):
        calls[services[rng.randrange(i)]].append(service)
    for service in services:
        if rng.random() < 0.5:
            calls[service].append(f"db{rng.randrange(DATABASES)}")
    databases = sorted({callee for callees in calls.values() for callee in callees if callee.startswith("db")})
    self_ms = {node: rng.uniform(1, 20) for node in services + [f"db{i}" for i in range(DATABASES)]}
    return Scenario(
        rng=rng,
        regime=regime,
        services=services,
        calls=calls,
        self_ms=self_ms,
        culprit=rng.choice(services[1:] + databases),  # the entry service itself would be found by alerts alone
        fault=rng.choice(["errors", "latency"]),
        skew={service: rng.uniform(-regime.skew_ms, regime.skew_ms) for service in services},
    )


def run(seed: int, regime: Regime) -> tuple[Scenario, list[str]]:
    """The scenario of `seed` and the nodes as `blame` ranks them."""
    case = scenario(seed, regime)
    for n in range(2 * REQUESTS):
        case.serve(f"{n + 1:032x}", None, case.services[0], n * 1000.0, n >= REQUESTS)
    return case, [b.service for b in blame(case.spans, ONSET)]


def evaluate(seeds: range, regime: Regime) -> dict[str, float]:
    top1 = top3 = 0
    for seed in seeds:
        case, ranked = run(seed, regime)
        top1 += ranked[:1] == [case.culprit]
        top3 += case.culprit in ranked[:3]
    return {"top1": top1 / len(seeds), "top3": top3 / len(seeds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    seeds = range(args.seed, args.seed + args.runs)
    for regime in REGIMES:
        scores = evaluate(seeds, regime)
        where = f"seeds {seeds.start}-{seeds.stop - 1}"
        print(f"{regime.name:13} {where}: top-1 {scores['top1']:.0%}, top-3 {scores['top3']:.0%}")


if __name__ == "__main__":
    main()
