"""The held-out evaluation on public Loghub data (eval/loghub): the scoring function, the shipped data, and
regression floors for the figures `vigil bench loghub` reports."""

from __future__ import annotations

import pytest

from eval.loghub.data import (
    HELD_OUT_SYSTEMS,
    SYSTEMS,
    TUNING_SYSTEMS,
    load_hdfs_sessions,
    load_system,
)
from eval.loghub.grouping import grouping_accuracy
from eval.loghub.pca import PcaDetector
from eval.sessioncorpus import prf
from vigil.analysis.sessions import SessionModel
from vigil.analysis.templates import TemplateMiner


def test_grouping_accuracy_by_hand() -> None:
    # truth groups {0,1}, {2}, {3,4}; predicted {0,1}, {2,3}, {4}: only lines 0 and 1 are grouped exactly
    assert grouping_accuracy(["a", "a", "b", "c", "c"], [1, 1, 2, 2, 3]) == pytest.approx(2 / 5)
    assert grouping_accuracy(["a", "a", "b"], ["x", "x", "y"]) == 1.0
    assert grouping_accuracy(["a", "b"], [1, 1]) == 0.0


def test_the_split_is_fixed_and_covers_every_system() -> None:
    assert len(SYSTEMS) == 16
    assert set(TUNING_SYSTEMS) | set(HELD_OUT_SYSTEMS) == set(SYSTEMS)
    assert not set(TUNING_SYSTEMS) & set(HELD_OUT_SYSTEMS)
    for name in SYSTEMS:
        messages = load_system(name)
        assert len(messages) >= 40, name
        assert all(m.event_id.startswith("E") and m.content for m in messages), name
    with pytest.raises(ValueError, match="unknown Loghub system"):
        load_system("Nope")


def _mean_ga(names: tuple[str, ...]) -> float:
    scores = []
    for name in names:
        messages = load_system(name)
        miner = TemplateMiner()
        ids = [miner.add(m.content).template_id for m in messages]
        scores.append(grouping_accuracy([m.event_id for m in messages], [miner.resolve(t) for t in ids]))
    return sum(scores) / len(scores)


def test_loghub_grouping_accuracy_floor() -> None:
    """Regression guard, not a target: measured 0.977 over all 16 samples and 0.973 over the 8 held-out ones
    (drain3 defaults: 0.816 / 0.792); the floors sit just below."""
    assert _mean_ga(SYSTEMS) >= 0.96
    assert _mean_ga(HELD_OUT_SYSTEMS) >= 0.95


def test_hdfs_sessions_are_real_and_disjoint() -> None:
    data = load_hdfs_sessions()
    assert len(data.train) >= 300
    assert data.test_anomalous.count(True) >= 300
    assert data.test_anomalous.count(False) >= 300
    train = {tuple(s) for s in data.train}
    assert any(tuple(s) not in train for s, bad in zip(data.test, data.test_anomalous, strict=True) if not bad)


def test_hdfs_session_detector_on_a_slice() -> None:
    """Fitted on normal sessions only; a slice of the held-out part. Regression guard (measured on the whole
    test part: F1 0.999, PCA 0.60)."""
    data = load_hdfs_sessions()
    model = SessionModel().fit(data.train)
    test = data.test[::3]
    truth = data.test_anomalous[::3]
    predicted = [model.score(str(i), events).anomalous for i, events in enumerate(test)]
    _, recall, f1 = prf(truth, predicted)
    assert recall >= 0.95
    assert f1 >= 0.95
    normal_flags = [p for p, t in zip(predicted, truth, strict=True) if not t]
    assert sum(normal_flags) / len(normal_flags) <= 0.02
    pca_f1 = prf(truth, PcaDetector().fit(data.train).predict(test))[2]
    assert pca_f1 < f1
