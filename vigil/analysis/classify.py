"""Incident classification: one `Category` with a calibrated confidence, from the evidence's features.

Features (`report.features_of`): detector names and categories (log counts), normalised exception types,
words of error templates and alerts, alert names/labels and deploy proximity. The model is a multinomial
logistic regression (scikit-learn, trained by `vigil model train`) over those sparse features. It is stored as
a JSON file (vocabulary, weights, calibration, the training incidents' feature sets) in `vigil/analysis/data/`
and scored with numpy alone, so inference needs no scikit-learn.

The corpus is generated, so the regression alone is overconfident on incidents unlike it (a bad deploy with
exception words it associates with configuration, 0.98 "configuration"). Its logits are therefore combined
with two things before the softmax:

- the detectors' votes (`evidence_votes`: detector categories weighted by log counts, a deploy followed by
  new exceptions for `deployment`, resource metrics that moved), as ``w * log q`` with ``q`` the smoothed vote
  share: independent, rule-based evidence that does not depend on phrasing seen in training;
- the distance to the training data: ``similarity`` is the Jaccard similarity of the feature set to the
  nearest training incident's, and the model's logits are scaled by ``lambda = clip((sim - lo) / (hi - lo))``.
  Far from every training incident (``lambda -> 0``) only the detectors speak, and with no detector evidence
  either the distribution is close to uniform: low confidence.

On a calibration part of the training split, ``w`` is fitted first by minimising the NLL of the detectors'
votes alone (they speak alone far from the training data), then ``T`` and ``v``, the detectors' weight next
to the model, given it; the weight of the votes is ``lambda * v + (1 - lambda) * w``. ``lo`` and ``hi`` are
quantiles of the calibration incidents' similarity (`SIMILARITY_QUANTILES`). Without a model file,
`fallback_classify` votes by detector category.
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

from vigil.analysis.detectors import SYMPTOM_DETECTORS, SYMPTOM_WEIGHT
from vigil.analysis.models import Category

Features = dict[str, float]
CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
DATA_DIR = Path(str(resources.files("vigil.analysis") / "data"))
DEFAULT_MODEL = DATA_DIR / "classifier.json"
DEFAULT_CORPUS = DATA_DIR / "incidents.jsonl"
MODEL_FORMAT = "vigil-incident-classifier/2"
LEGACY_FORMAT = "vigil-incident-classifier/1"
PRIOR_ALPHA = 1.0  # smoothing of the detectors' vote share: one vote is weak evidence, not certainty
DEPLOY_VOTE = 2.0  # a deploy followed by new exceptions in its service, as many votes as ~6 log lines
SUSPECT_WEIGHT = 1.5  # of the top suspect's category votes next to the classifier (`with_suspect_votes`)
# The similarity range over which the model's weight goes from 0 to 1: quantiles of held-out in-distribution
# incidents' similarity. A trade: higher quantiles distrust the model sooner out of distribution, and cost
# held-out accuracy where the detectors alone are wrong.
SIMILARITY_QUANTILES = (0.0, 0.25)
_CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}


@dataclass(frozen=True)
class Prediction:
    category: Category
    confidence: float
    probabilities: dict[str, float]
    source: str  # "model" or "fallback"
    similarity: float | None = None  # Jaccard, to the nearest training incident (model only)


@dataclass(frozen=True)
class Calibration:
    """How logits, detector votes and distance to the training data combine (see the module docstring)."""

    temperature: float = 1.0
    prior_weight: float = 0.0  # of the detectors' votes far from the training data (alone)
    sim_lo: float = 0.0
    sim_hi: float = 0.0
    prior_weight_near: float = 0.0  # of the detectors' votes next to the model's logits, in distribution

    def model_weight(self, similarity: float | None) -> float:
        if similarity is None or self.sim_hi <= self.sim_lo:
            return 1.0
        return min(max((similarity - self.sim_lo) / (self.sim_hi - self.sim_lo), 0.0), 1.0)


def evidence_votes(features: Features) -> Any:
    """Votes per category (in `CATEGORIES` order) from the rule-based evidence among the features.

    Errors that rose after a deploy (the bad-deploy detector) are strong evidence of the deploy when they are
    new application exceptions; when they are not (a full disk right after a release), they count half. A symptom
    detector (`SYMPTOM_DETECTORS`: the 5xx spike) next to another detector's cause counts `SYMPTOM_WEIGHT`.
    """
    votes = np.zeros(len(CATEGORIES))
    for name, value in features.items():
        if name.startswith("detcat:"):
            j = _CATEGORY_INDEX.get(name[7:])
            if j is not None:
                votes[j] += value
    for name, category in SYMPTOM_DETECTORS.items():
        value = features.get(f"det:{name}", 0.0)
        j = _CATEGORY_INDEX[category.value]
        if value and any(v > 0 for i, v in enumerate(votes) if i != j):
            votes[j] -= (1 - SYMPTOM_WEIGHT) * value
    deployment = _CATEGORY_INDEX["deployment"]
    if features.get("deploy:app_exc_after"):
        votes[deployment] += DEPLOY_VOTE
    else:
        votes[deployment] -= 0.5 * features.get("det:bad-deploy", 0.0)
    return votes


def _log_prior(votes: Any) -> Any:
    q = votes + PRIOR_ALPHA
    return np.log(q / q.sum())


def _softmax(z: Any) -> Any:
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


class Classifier:
    """A trained model: vocabulary → weights, combined with detector votes and the distance to training data."""

    def __init__(
        self,
        classes: Sequence[str],
        vocabulary: Mapping[str, int],
        coef: Any,
        intercept: Any,
        t: float,
        *,
        calibration: Calibration | None = None,
        reference: Sequence[Sequence[int]] = (),
    ):
        self.classes = list(classes)
        self.vocabulary = dict(vocabulary)
        self.coef = np.asarray(coef, dtype=np.float64)  # (n_classes, n_features)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.calibration = calibration or Calibration(temperature=float(t))
        self.reference = [sorted(set(row)) for row in reference]  # training incidents' feature indexes
        self._matrix: Any = None
        self._sizes: Any = None

    @property
    def temperature(self) -> float:
        return self.calibration.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        c = self.calibration
        self.calibration = Calibration(value, c.prior_weight, c.sim_lo, c.sim_hi, c.prior_weight_near)

    def similarity(self, features: Features) -> float | None:
        """Jaccard similarity of the feature set to the nearest training incident's; None without reference."""
        if not self.reference:
            return None
        if not features:
            return 0.0
        if self._matrix is None:
            matrix = np.zeros((len(self.reference), len(self.vocabulary)), dtype=np.float32)
            for i, row in enumerate(self.reference):
                matrix[i, row] = 1.0
            self._matrix = matrix
            self._sizes = matrix.sum(axis=1)
        known = [j for j in (self.vocabulary.get(name) for name in features) if j is not None]
        if not known:
            return 0.0
        shared = self._matrix[:, known].sum(axis=1)
        scores = shared / (self._sizes + len(features) - shared)
        return round(float(scores.max()), 4)

    def combined(self, features: Features) -> tuple[Any, float | None]:
        """Calibrated class scores (before the softmax) and the similarity they were weighted by."""
        c = self.calibration
        sim = self.similarity(features)
        lam = c.model_weight(sim)
        z = lam * self.logits(features) / c.temperature
        w = lam * c.prior_weight_near + (1 - lam) * c.prior_weight
        if w:
            z = z + w * _log_prior(evidence_votes(features))
        return z, sim

    def logits(self, features: Features) -> Any:
        z = self.intercept.copy()
        for name, value in features.items():
            j = self.vocabulary.get(name)
            if j is not None:
                z += self.coef[:, j] * value
        return z

    def predict(self, features: Features) -> Prediction:
        z, sim = self.combined(features)
        p = _softmax(z)
        best = int(p.argmax())
        probs = {c: round(float(v), 4) for c, v in zip(self.classes, p, strict=True)}
        return Prediction(Category(self.classes[best]), float(p[best]), probs, "model", sim)

    def to_json(self) -> dict[str, Any]:
        c = self.calibration
        return {
            "format": MODEL_FORMAT,
            "classes": self.classes,
            "temperature": round(c.temperature, 6),
            "prior_weight": round(c.prior_weight, 6),
            "prior_weight_near": round(c.prior_weight_near, 6),
            "similarity_range": [round(c.sim_lo, 6), round(c.sim_hi, 6)],
            "intercept": [round(float(v), 6) for v in self.intercept],
            "vocabulary": sorted(self.vocabulary, key=self.vocabulary.__getitem__),
            "coef": [[round(float(v), 5) for v in row] for row in self.coef],
            "reference": self.reference,
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
        if data.get("format") not in (MODEL_FORMAT, LEGACY_FORMAT):
            raise ValueError(f"{path}: not a {MODEL_FORMAT} model")
        vocabulary = {name: i for i, name in enumerate(data["vocabulary"])}
        if data["format"] == LEGACY_FORMAT:  # temperature only: scored as before, without votes or similarity
            calibration = Calibration(float(data["temperature"]))
        else:
            lo, hi = data["similarity_range"]
            calibration = Calibration(
                float(data["temperature"]),
                float(data["prior_weight"]),
                float(lo),
                float(hi),
                float(data["prior_weight_near"]),
            )
        return cls(
            data["classes"],
            vocabulary,
            data["coef"],
            data["intercept"],
            calibration.temperature,
            calibration=calibration,
            reference=data.get("reference", ()),
        )


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


def with_suspect_votes(prediction: Prediction, votes: Mapping[str, float]) -> Prediction:
    """The prediction pooled (log-linear, as the detectors' votes are) with the top suspect's votes per category
    (`localise`): the failure of the component that broke — its own metrics, the errors that name it, the kind
    of thing it is — rather than the loudest symptom. Unchanged without votes."""
    if not votes or sum(votes.values()) <= 0:
        return prediction
    v = np.array([max(float(votes.get(c, 0.0)), 0.0) for c in CATEGORIES])
    p = np.array([prediction.probabilities.get(c, 0.0) for c in CATEGORIES])
    z = np.log(np.maximum(p, 1e-6)) + SUSPECT_WEIGHT * _log_prior(v)
    pooled = _softmax(z)
    best = int(pooled.argmax())
    probs = {c: round(float(x), 4) for c, x in zip(CATEGORIES, pooled, strict=True)}
    return Prediction(Category(CATEGORIES[best]), float(pooled[best]), probs, prediction.source, prediction.similarity)


def shrunk(prediction: Prediction, keep: float) -> Prediction:
    """The prediction mixed with the uniform distribution, `keep` of it kept: what evidence that cannot tell
    categories apart well is worth (an alert's words alone, with nothing observed to back them)."""
    n = len(CATEGORIES)
    probs = {c: round(keep * prediction.probabilities.get(c, 0.0) + (1 - keep) / n, 4) for c in CATEGORIES}
    best = max(CATEGORIES, key=lambda c: probs[c])
    return Prediction(Category(best), probs[best], probs, prediction.source, prediction.similarity)


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
    reference = [[vocabulary[name] for name in f if name in vocabulary] for f, _ in rows]
    return Classifier(CATEGORIES, vocabulary, coef, intercept, 1.0, reference=reference)


def _nll(model: Classifier, rows: Sequence[tuple[Features, str]]) -> float:
    total = 0.0
    for features, label in rows:
        z, _ = model.combined(features)
        z = z - z.max()
        total -= float(z[model.classes.index(label)] - math.log(float(np.exp(z).sum())))
    return total / max(len(rows), 1)


def _fit_calibration(model: Classifier, rows: Sequence[tuple[Features, str]]) -> Calibration:
    """Temperature, detector-vote weight and similarity range from held-out rows (see the module docstring)."""
    if not rows:
        return Calibration()
    sims = np.array([model.similarity(f) or 0.0 for f, _ in rows])
    lo, hi = (float(q) for q in np.quantile(sims, SIMILARITY_QUANTILES))
    base = Calibration(1.0, 0.0, lo, hi)
    weights = np.array([base.model_weight(float(s)) for s in sims])
    logits = np.array([model.logits(f) for f, _ in rows])
    priors = np.array([_log_prior(evidence_votes(f)) for f, _ in rows])
    labels = np.array([model.classes.index(label) for _, label in rows])

    def nll(z: Any) -> float:
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(rows)), labels].mean())

    # The detectors' weight alone (as they speak far from the training data), then the temperature and the
    # detectors' weight next to the model's logits.
    w = min((0.25 * k for k in range(25)), key=lambda w: nll(w * priors))
    lam = weights[:, None]
    grid = [(round(0.1 * 1.12**k, 4), 0.5 * v) for k in range(45) for v in range(9)]
    t, v = min(grid, key=lambda tv: nll(lam * (logits / tv[0] + tv[1] * priors) + (1 - lam) * w * priors))
    return Calibration(t, w, lo, hi, v)


def evaluate(model: Classifier, rows: Sequence[tuple[Features, str]]) -> tuple[float, float, float]:
    """Accuracy, expected calibration error and mean NLL of `model` on labelled rows."""
    preds = [model.predict(f) for f, _ in rows]
    correct = [p.category.value == label for p, (_, label) in zip(preds, rows, strict=True)]
    accuracy = sum(correct) / max(len(rows), 1)
    ece = expected_calibration_error([p.confidence for p in preds], correct)
    return accuracy, ece, _nll(model, rows)


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
    """Fit on the training split, calibrate on a held-out part of it, measure on the test split.

    With `final`, the returned model is then refitted on all rows (with the measured temperature), the
    figures staying those of the held-out split.
    """
    train_rows, test_rows = split(rows, seed, test_share)
    fit_rows, calib_rows = split(train_rows, seed + 1, 0.25)
    model = _fit(fit_rows)
    model.calibration = _fit_calibration(model, calib_rows)
    accuracy, ece, nll = evaluate(model, test_rows)
    if final:
        calibration = model.calibration
        model = _fit(rows)
        model.calibration = calibration
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


def run_train(
    corpus: str | None,
    feedback: str | None,
    out: str | None,
    *,
    feedback_weight: int = 3,
    stored_feedback: Sequence[dict[str, Any]] = (),
) -> int:
    """`vigil model train`: corpus (+ feedback, from a JSONL file and/or `stored_feedback` rows of the same
    format read from the store, repeated `feedback_weight` times) → model file."""
    try:
        rows = labelled_features(read_labelled(corpus or DEFAULT_CORPUS))
        extra = labelled_features(read_labelled(feedback)) if feedback else []
    except (OSError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    extra += labelled_features(stored_feedback)
    result = train(rows + extra * feedback_weight)
    target = Path(out) if out else DEFAULT_MODEL
    result.classifier.save(target)
    default_classifier.cache_clear()
    summary = {
        "model": str(target),
        "corpus_rows": len(rows),
        "feedback_rows": len(extra),
        "stored_feedback_rows": len(stored_feedback),
        "held_out": result.test_size,
        "accuracy": round(result.accuracy, 4),
        "ece": round(result.ece, 4),
        "nll": round(result.nll, 4),
        "temperature": result.classifier.temperature,
        "prior_weight": result.classifier.calibration.prior_weight,
        "prior_weight_near": result.classifier.calibration.prior_weight_near,
        "similarity_range": [result.classifier.calibration.sim_lo, result.classifier.calibration.sim_hi],
        "features": len(result.classifier.vocabulary),
    }
    print(json.dumps(summary, indent=2))
    return 0
