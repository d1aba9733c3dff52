"""Incident classification: one `Category` with a calibrated confidence, from the evidence's features.

Features (`report.features_of`): detector names and categories (log counts), normalised exception types,
words of error templates and alerts, alert names/labels and deploy proximity. The model is a multinomial
logistic regression (scikit-learn, trained by `vigil model train`) over those sparse features, calibrated by
temperature scaling on a held-out part of the corpus. It is stored as a small JSON file (vocabulary, weights,
temperature) in `vigil/analysis/data/` and scored with numpy alone, so inference needs no scikit-learn.
Without a model file, `fallback_classify` votes by detector category.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vigil.analysis.models import Category

Features = dict[str, float]
CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
DATA_DIR = Path(str(resources.files("vigil.analysis") / "data"))
DEFAULT_MODEL = DATA_DIR / "classifier.json"
DEFAULT_CORPUS = DATA_DIR / "incidents.jsonl"
MODEL_FORMAT = "vigil-incident-classifier/1"


@dataclass(frozen=True)
class Prediction:
    category: Category
    confidence: float
    probabilities: dict[str, float]
    source: str  # "model" or "fallback"


class Classifier:
    """A trained model: vocabulary → weights, softmax with a temperature."""

    def __init__(self, classes: Sequence[str], vocabulary: Mapping[str, int], coef: Any, intercept: Any, t: float):
        self.classes = list(classes)
        self.vocabulary = dict(vocabulary)
        self.coef = np.asarray(coef, dtype=np.float64)  # (n_classes, n_features)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.temperature = float(t)

    def logits(self, features: Features) -> Any:
        z = self.intercept.copy()
        for name, value in features.items():
            j = self.vocabulary.get(name)
            if j is not None:
                z += self.coef[:, j] * value
        return z

    def predict(self, features: Features) -> Prediction:
        z = self.logits(features) / self.temperature
        z -= z.max()
        p = np.exp(z)
        p /= p.sum()
        best = int(p.argmax())
        probs = {c: round(float(v), 4) for c, v in zip(self.classes, p, strict=True)}
        return Prediction(Category(self.classes[best]), float(p[best]), probs, "model")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "classes": self.classes,
            "temperature": round(self.temperature, 6),
            "intercept": [round(float(v), 6) for v in self.intercept],
            "vocabulary": sorted(self.vocabulary, key=self.vocabulary.__getitem__),
            "coef": [[round(float(v), 5) for v in row] for row in self.coef],
        }

    def save(self, path: str | Path) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
        tmp.replace(target)

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path}: not a {MODEL_FORMAT} model")
        vocabulary = {name: i for i, name in enumerate(data["vocabulary"])}
        return cls(data["classes"], vocabulary, data["coef"], data["intercept"], data["temperature"])


@lru_cache(maxsize=1)
def default_classifier() -> Classifier | None:
    """The packaged model, loaded once per process; None when there is none (then the fallback votes)."""
    try:
        return Classifier.load(DEFAULT_MODEL)
    except (OSError, ValueError, KeyError):
        return None


def fallback_classify(features: Features) -> Prediction:
    """Deterministic vote of detector categories (weighted by log counts) when there is no model."""
    votes = dict.fromkeys(CATEGORIES, 0.0)
    for name, value in features.items():
        if name.startswith("detcat:"):
            votes[name.split(":", 1)[1]] += value
    if features.get("deploy:bad") or features.get("deploy:new_exc_after"):
        votes["deployment"] += 2.0
    total = sum(votes.values())
    if total <= 0:
        probs = {c: round(1 / len(CATEGORIES), 4) for c in CATEGORIES}
        return Prediction(Category.DEPENDENCY, 0.1, probs, "fallback")
    best = max(CATEGORIES, key=lambda c: (votes[c], -CATEGORIES.index(c)))
    probs = {c: round(v / total, 4) for c, v in votes.items()}
    # A vote share is not a calibrated probability: shrink it towards uniform.
    return Prediction(Category(best), round(0.2 + 0.6 * votes[best] / total, 4), probs, "fallback")


def classify(features: Features, classifier: Classifier | None = None) -> Prediction:
    model = classifier if classifier is not None else default_classifier()
    return model.predict(features) if model is not None else fallback_classify(features)


# -- training -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    classifier: Classifier
    train_size: int
    test_size: int
    accuracy: float
    ece: float
    nll: float


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    n = len(confidences)
    if n == 0:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if lo < c <= hi or (b == 0 and c == 0)]
        if idx:
            conf = sum(confidences[i] for i in idx) / len(idx)
            acc = sum(1 for i in idx if correct[i]) / len(idx)
            total += len(idx) / n * abs(conf - acc)
    return total


def _fit(rows: Sequence[tuple[Features, str]], c: float = 1.0) -> Classifier:
    from sklearn.feature_extraction import DictVectorizer  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    vectorizer = DictVectorizer(sort=True)
    x = vectorizer.fit_transform([f for f, _ in rows])
    y = [label for _, label in rows]
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(x, y)
    classes = [str(k) for k in model.classes_]
    coef = np.zeros((len(CATEGORIES), x.shape[1]))
    intercept = np.full(len(CATEGORIES), -30.0)  # a class never seen in training is never predicted
    for i, k in enumerate(classes):
        coef[CATEGORIES.index(k)] = model.coef_[i] if len(classes) > 2 else (model.coef_[0] * (1 if i else -1))
        intercept[CATEGORIES.index(k)] = model.intercept_[i] if len(classes) > 2 else 0.0
    vocabulary = {str(name): int(j) for name, j in vectorizer.vocabulary_.items()}
    return Classifier(CATEGORIES, vocabulary, coef, intercept, 1.0)


def _nll(model: Classifier, rows: Sequence[tuple[Features, str]], t: float) -> float:
    total = 0.0
    for features, label in rows:
        z = model.logits(features) / t
        z -= z.max()
        logp = z - math.log(float(np.exp(z).sum()))
        total -= float(logp[model.classes.index(label)])
    return total / max(len(rows), 1)


def _fit_temperature(model: Classifier, rows: Sequence[tuple[Features, str]]) -> float:
    if not rows:
        return 1.0
    grid = [round(0.1 * 1.12**k, 4) for k in range(45)]
    return min(grid, key=lambda t: _nll(model, rows, t))


def evaluate(model: Classifier, rows: Sequence[tuple[Features, str]]) -> tuple[float, float, float]:
    """Accuracy, expected calibration error and mean NLL of `model` on labelled rows."""
    preds = [model.predict(f) for f, _ in rows]
    correct = [p.category.value == label for p, (_, label) in zip(preds, rows, strict=True)]
    accuracy = sum(correct) / max(len(rows), 1)
    ece = expected_calibration_error([p.confidence for p in preds], correct)
    return accuracy, ece, _nll(model, rows, model.temperature)


def split(rows: Sequence[tuple[Features, str]], seed: int = 1, test_share: float = 0.25) -> tuple[list[Any], list[Any]]:
    """A seeded, per-category stratified split: (train, test)."""
    rng = random.Random(seed)
    train: list[tuple[Features, str]] = []
    test: list[tuple[Features, str]] = []
    for category in CATEGORIES:
        mine = [r for r in rows if r[1] == category]
        rng.shuffle(mine)
        cut = round(len(mine) * test_share)
        test += mine[:cut]
        train += mine[cut:]
    return train, test


def train(
    rows: Sequence[tuple[Features, str]], *, seed: int = 1, test_share: float = 0.25, final: bool = True
) -> TrainResult:
    """Fit on the training split, fit the temperature on a calibration part of it, measure on the test split.

    With `final`, the returned model is then refitted on all rows (with the measured temperature), the
    figures staying those of the held-out split.
    """
    train_rows, test_rows = split(rows, seed, test_share)
    fit_rows, calib_rows = split(train_rows, seed + 1, 0.25)
    model = _fit(fit_rows)
    model.temperature = _fit_temperature(model, calib_rows)
    accuracy, ece, nll = evaluate(model, test_rows)
    if final:
        temperature = model.temperature
        model = _fit(rows)
        model.temperature = temperature
    return TrainResult(model, len(train_rows), len(test_rows), accuracy, ece, nll)


def read_labelled(path: str | Path) -> list[dict[str, Any]]:
    """JSONL rows {"category": ..., "bundle": {...}} or {"category": ..., "features": {...}}."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: malformed JSON: {exc}") from None
        if not isinstance(row, dict) or row.get("category") not in CATEGORIES:
            raise ValueError(f"{path}:{number}: needs a 'category' among {', '.join(CATEGORIES)}")
        if not isinstance(row.get("bundle"), dict) and not isinstance(row.get("features"), dict):
            raise ValueError(f"{path}:{number}: needs a 'bundle' or 'features' object")
        rows.append(row)
    return rows


def labelled_features(rows: Sequence[dict[str, Any]]) -> list[tuple[Features, str]]:
    from vigil.analysis.bundle import parse_bundle
    from vigil.analysis.report import extract

    out: list[tuple[Features, str]] = []
    for row in rows:
        if isinstance(row.get("features"), dict):
            features = {str(k): float(v) for k, v in row["features"].items()}
        else:
            features = extract(parse_bundle(row["bundle"])).features
        out.append((features, row["category"]))
    return out


def run_train(corpus: str | None, feedback: str | None, out: str | None, *, feedback_weight: int = 3) -> int:
    """`vigil model train`: corpus (+ feedback, repeated `feedback_weight` times) → model file."""
    try:
        rows = labelled_features(read_labelled(corpus or DEFAULT_CORPUS))
        extra = labelled_features(read_labelled(feedback)) if feedback else []
    except (OSError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    result = train(rows + extra * feedback_weight)
    target = Path(out) if out else DEFAULT_MODEL
    result.classifier.save(target)
    default_classifier.cache_clear()
    summary = {
        "model": str(target),
        "corpus_rows": len(rows),
        "feedback_rows": len(extra),
        "held_out": result.test_size,
        "accuracy": round(result.accuracy, 4),
        "ece": round(result.ece, 4),
        "nll": round(result.nll, 4),
        "temperature": result.classifier.temperature,
        "features": len(result.classifier.vocabulary),
    }
    print(json.dumps(summary, indent=2))
    return 0
