"""Vigil's confidence in a diagnosis, computed from the evidence and the agreement of the analysers.

- `p`: the classifier's calibrated probability of the category;
- `support`: the severity-weighted share of detector findings that point at that category;
- agreement: with findings present, a category no detector supports is halved; with no findings at all the
  classifier alone speaks and is shrunk (0.6);
- for an LLM answer, also the share of its statements that survived the citation check and, mildly, the
  model's own confidence (at most a fifth of the weight: a model saying "0.99" does not make it so).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from vigil.analysis.detectors import SYMPTOM_DETECTORS, SYMPTOM_WEIGHT
from vigil.analysis.models import Finding

SEVERITY_WEIGHT = {"critical": 3.0, "high": 2.0, "warning": 1.0, "info": 0.5}


def detector_support(findings: Sequence[Finding]) -> dict[str, float]:
    weights: dict[str, float] = defaultdict(float)
    causes = {f.category for f in findings if f.detector not in SYMPTOM_DETECTORS}
    for finding in findings:
        weight = SEVERITY_WEIGHT.get(finding.severity, 1.0)
        if finding.detector in SYMPTOM_DETECTORS and causes - {finding.category}:
            weight *= SYMPTOM_WEIGHT
        weights[finding.category.value] += weight
    total = sum(weights.values())
    return {category: round(w / total, 4) for category, w in weights.items()} if total else {}


def evidence_confidence(category: str, probabilities: Mapping[str, float], support: Mapping[str, float]) -> float:
    p = probabilities.get(category, 0.0)
    agreement = 0.5 + 0.5 * support.get(category, 0.0) if support else 0.6
    return round(min(max(p * agreement, 0.0), 1.0), 4)


def llm_confidence(
    category: str,
    probabilities: Mapping[str, float],
    support: Mapping[str, float],
    *,
    kept_fraction: float,
    self_reported: float,
) -> float:
    base = evidence_confidence(category, probabilities, support)
    return round(min(max(base * kept_fraction * (0.8 + 0.2 * self_reported), 0.0), 1.0), 4)
