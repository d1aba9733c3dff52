"""The incident classifier: held-out accuracy and calibration on the generated corpus, retraining from feedback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.incidentcorpus import corpus
from vigil.analysis.bundle import parse_bundle
from vigil.analysis.classify import (
    DEFAULT_CORPUS,
    Classifier,
    Features,
    classify,
    default_classifier,
    expected_calibration_error,
    fallback_classify,
    labelled_features,
    read_labelled,
    run_train,
    train,
)
from vigil.analysis.models import Category
from vigil.analysis.report import extract


@pytest.fixture(scope="module")
def rows() -> list[tuple[Features, str]]:
    return labelled_features(read_labelled(DEFAULT_CORPUS))


def test_packaged_corpus_is_the_generated_one() -> None:
    packaged = [json.loads(line) for line in DEFAULT_CORPUS.read_text().splitlines()[:5]]
    assert packaged == corpus()[:5]


def test_held_out_accuracy_and_calibration(rows: list[tuple[Features, str]]) -> None:
    result = train(rows, final=False)
    assert result.test_size >= 100
    assert result.accuracy >= 0.9
    assert result.ece < 0.1
    # Calibration sanity: wrong answers come with lower confidence than right ones, on average.
    model = result.classifier
    right: list[float] = []
    wrong: list[float] = []
    for seed in (1, 2, 3):
        fitted = train(rows, seed=seed, final=False).classifier
        for features, label in rows[seed::7]:
            p = fitted.predict(features)
            (right if p.category.value == label else wrong).append(p.confidence)
    assert right
    if wrong:
        assert sum(wrong) / len(wrong) < sum(right) / len(right)
    assert 0 < model.temperature < 10


def test_packaged_model_loads_and_predicts() -> None:
    model = default_classifier()
    assert model is not None
    bundle = parse_bundle(corpus(1)[0]["bundle"])
    prediction = classify(extract(bundle).features)
    assert prediction.source == "model"
    assert 0 < prediction.confidence <= 1
    assert abs(sum(prediction.probabilities.values()) - 1) < 0.01


def test_fallback_votes_by_detector_category() -> None:
    p = fallback_classify({"detcat:storage": 3.0, "detcat:network": 1.0})
    assert p.category is Category.STORAGE
    assert p.source == "fallback"
    assert fallback_classify({}).confidence <= 0.2


def test_ece() -> None:
    assert expected_calibration_error([0.9, 0.9], [True, True]) == pytest.approx(0.1)
    assert expected_calibration_error([], []) == 0


def _flux_bundle(i: int) -> dict[str, object]:
    lines = [
        {
            "ts": f"2026-03-01T10:{m:02d}:00Z",
            "service": "reactor",
            "line": f"ERROR flux capacitor desynchronised phase {i + m}",
        }
        for m in range(6)
    ]
    alerts = [{"labels": {"alertname": "FluxCapacitorDesync", "service": "reactor", "severity": "critical"}}]
    return {"alerts": alerts, "logs": lines}


def test_retraining_from_feedback_learns_a_new_pattern(tmp_path: Path) -> None:
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(
        "".join(json.dumps({"category": "capacity", "bundle": _flux_bundle(i)}) + "\n" for i in range(4))
    )
    out = tmp_path / "model.json"
    assert run_train(None, str(feedback), str(out)) == 0
    new = Classifier.load(out)
    features = extract(parse_bundle(_flux_bundle(99))).features
    old = default_classifier()
    assert old is not None
    before = old.predict(features)
    after = new.predict(features)
    assert after.category is Category.CAPACITY
    assert after.probabilities["capacity"] > before.probabilities["capacity"]
    assert any(name.startswith("alert:fluxcapacitordesync") for name in new.vocabulary)


def test_bad_feedback_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"category": "weather", "features": {}}\n')
    assert run_train(None, str(bad), str(tmp_path / "m.json")) == 2
    assert "category" in capsys.readouterr().out
