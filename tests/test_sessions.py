"""Session-level anomalies: the generated HDFS-like corpus, rare-but-normal paths, and `vigil logs sessions`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eval.sessioncorpus import Session, evaluate, generate, prf, train_test
from vigil.analysis.sessions import SessionModel
from vigil.cli import app


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Session], list[Session], SessionModel]:
    train, test = train_test(seed=11, n_train=3000, n_test=3000)
    return train, test, SessionModel().fit([s.events for s in train])


def test_f1_on_generated_hdfs_corpus(corpus: tuple[list[Session], list[Session], SessionModel]) -> None:
    _, test, model = corpus
    predicted = [r.anomalous for r in model.score_many((s.id, s.events) for s in test)]
    precision, recall, f1 = prf([s.anomalous for s in test], predicted)
    assert sum(s.anomalous for s in test) >= 50
    assert f1 >= 0.95, (precision, recall, f1)


def test_rare_but_normal_paths_are_not_flagged(corpus: tuple[list[Session], list[Session], SessionModel]) -> None:
    _, test, model = corpus
    rare = [s for s in test if s.kind == "rare-normal"]
    assert len(rare) >= 20
    assert not [s.id for s in rare if model.score(s.id, s.events).anomalous]


def test_every_anomaly_kind_is_caught(corpus: tuple[list[Session], list[Session], SessionModel]) -> None:
    _, test, model = corpus
    for s in test:
        if s.anomalous:
            result = model.score(s.id, s.events)
            assert result.anomalous, (s.kind, s.events)
            assert result.reasons


def test_templates_map_to_themselves() -> None:
    normal = [["open <*>", "read <*> bytes", "close <*>"]] * 20
    model = SessionModel().fit(normal)
    assert not model.score("a", ["open f1", "read 10 bytes", "close f1"]).anomalous
    assert not model.score("b", ["open <*>", "read <*> bytes", "close <*>"]).anomalous
    flagged = model.score("c", ["open f1", "disk on fire", "close f1"])
    assert flagged.anomalous
    assert any("unseen templates: ?disk on fire" in r for r in flagged.reasons)


def test_evaluate_reports_both_models() -> None:
    results = evaluate(seed=3, n_train=800, n_test=800)
    assert set(results) == {"vigil", "isolation_forest"}
    assert all(0.0 <= v <= 1.0 for r in results.values() for v in r.values())


def test_cli_round_trip(tmp_path: Path) -> None:
    train = generate(600, seed=5, anomaly_rate=0.0)
    test = generate(300, seed=6, anomaly_rate=0.05)
    train_file, test_file = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train_file.write_text("".join(json.dumps({"id": s.id, "events": s.events}) + "\n" for s in train))
    test_file.write_text("\n".join(json.dumps({"id": s.id, "events": s.events}) for s in test) + "\n\n")
    result = CliRunner().invoke(app, ["logs", "sessions", "--train", str(train_file), "--score", str(test_file)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == [s.id for s in test]
    assert all(set(r) == {"id", "score", "anomalous"} for r in rows)
    assert all(isinstance(r["anomalous"], bool) and isinstance(r["score"], float | int) for r in rows)
    truth = {s.id: s.anomalous for s in test}
    assert prf([truth[r["id"]] for r in rows], [r["anomalous"] for r in rows])[2] >= 0.9


def test_cli_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    result = CliRunner().invoke(app, ["logs", "sessions", "--train", str(bad), "--score", str(bad)])
    assert result.exit_code == 2


def test_length_outliers() -> None:
    """A session far longer than any normal one is flagged for its length, even when every event and transition
    in it is known."""
    normal = [["open <*>", *(["read <*> bytes"] * (3 + i % 4)), "close <*>"] for i in range(40)]
    model = SessionModel().fit(normal)
    assert not model.score("ok", ["open f", "read 1 bytes", "read 2 bytes", "read 3 bytes", "close f"]).anomalous
    looping = model.score("loop", ["open f", *(["read 1 bytes"] * 40), "close f"])
    assert looping.anomalous
    assert any(r.startswith("session length 42 outside") for r in looping.reasons)
