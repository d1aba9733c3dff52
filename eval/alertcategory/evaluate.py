"""`python -m eval.alertcategory.evaluate [--json]`: the category and confidence Vigil gives an incident that is
only one alert of a published rule set, with no logs, metrics or deploys.

The alerts are `eval/retrieval/alerts.jsonl`: real rules of the kubernetes, node-exporter, prometheus, etcd,
postgres, alertmanager, coredns and cert-manager mixins and awesome-prometheus-alerts, rendered as Alertmanager
delivers them, with the rule's expression in `generatorURL` as Prometheus sends it. Vigil's own rules
(`vigil-infra`) are left out. `categories.json` says, per runbook group, the category the rule itself names, or
null when the alert is a symptom whose cause it does not say. Reported:

- rules that name their cause: accuracy, mean confidence and expected calibration error (10 bins);
- symptom alerts: mean confidence and the share given a confidence of 0.5 or more (a confident guess);
- a baseline that always answers the most common category, at that category's frequency as its confidence;
- each figure for the mixins (`tune`, what any change may look at) and awesome-prometheus-alerts (`held-out`).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from vigil.analysis.bundle import parse_bundle
from vigil.analysis.classify import default_classifier, expected_calibration_error
from vigil.analysis.report import analyze
from vigil.knowledge.base import INSTALL_ROOT as REPO

ALERTS = REPO / "eval" / "retrieval" / "alerts.jsonl"
CATEGORIES = REPO / "eval" / "alertcategory" / "categories.json"
OWN_RULES = "vigil-infra"
HELD_OUT = "awesome-prometheus-alerts"
CONFIDENT = 0.5


@dataclass(frozen=True)
class Outcome:
    alertname: str
    source: str
    expected: str | None  # None: a symptom alert
    category: str
    confidence: float

    @property
    def part(self) -> str:
        return "held-out" if self.source == HELD_OUT else "tune"


def load(alerts: Path = ALERTS, categories: Path = CATEGORIES) -> list[tuple[dict[str, Any], str, str | None]]:
    """(alert, source, expected category) for every alert of a published rule set, with the `generatorURL`
    Prometheus would send (its rule's expression)."""
    expected: dict[str, str | None] = {k: v for k, v in json.loads(categories.read_text()).items() if k != "_about"}
    cases = []
    for line in alerts.read_text().splitlines():
        row = json.loads(line)
        if row["source"] == OWN_RULES:
            continue
        url = f"http://prometheus:9090/graph?g0.expr={quote(row['expr'])}&g0.tab=1"
        cases.append(({**row["alert"], "generatorURL": url}, row["source"], expected[row["runbook"]]))
    return cases


def diagnose(alert: dict[str, Any], source: str, expected: str | None) -> Outcome:
    starts = datetime.now(UTC).isoformat()
    bundle = parse_bundle({"alerts": [{"status": "firing", "startsAt": starts, **alert}], "logs": []})
    report = analyze(bundle, classifier=default_classifier())
    return Outcome(alert["labels"]["alertname"], source, expected, report.category.value, report.confidence)


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    named = [o for o in outcomes if o.expected is not None]
    symptoms = [o for o in outcomes if o.expected is None]
    correct = [o.category == o.expected for o in named]
    out: dict[str, Any] = {"alerts": len(outcomes), "named": len(named), "symptoms": len(symptoms)}
    if named:
        out["accuracy"] = round(sum(correct) / len(named), 3)
        out["mean_confidence_named"] = round(statistics.fmean(o.confidence for o in named), 3)
        out["ece"] = round(expected_calibration_error([o.confidence for o in named], correct), 3)
        counts = Counter(o.expected for o in named)
        share = counts.most_common(1)[0][1] / len(named)
        out["baseline_accuracy"] = round(share, 3)
        base_correct = [o.expected == counts.most_common(1)[0][0] for o in named]
        out["baseline_ece"] = round(expected_calibration_error([share] * len(named), base_correct), 3)
    if symptoms:
        out["mean_confidence_symptoms"] = round(statistics.fmean(o.confidence for o in symptoms), 3)
        out["confident_on_symptoms"] = round(sum(o.confidence >= CONFIDENT for o in symptoms) / len(symptoms), 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures and every outcome as JSON")
    parser.add_argument("--misses", action="store_true", help="list the alerts whose named category was missed")
    args = parser.parse_args(argv)
    outcomes = [diagnose(*case) for case in load()]
    parts = {"all": outcomes} | {p: [o for o in outcomes if o.part == p] for p in ("tune", "held-out")}
    figures = {name: summary(part) for name, part in parts.items()}
    if args.json:
        print(json.dumps({"figures": figures, "outcomes": [o.__dict__ for o in outcomes]}, indent=2))
        return 0
    table = Table(title="Alert-only incidents from published rule sets")
    table.add_column("figure")
    for name in figures:
        table.add_column(name, justify="right")
    for key in figures["all"]:
        table.add_row(key, *(str(f.get(key, "")) for f in figures.values()))
    Console().print(table)
    if args.misses:
        for o in outcomes:
            if o.expected is not None and o.category != o.expected:
                print(f"{o.part:8} {o.alertname:45} expected {o.expected:13} got {o.category} {o.confidence:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
