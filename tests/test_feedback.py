"""Feedback on diagnoses (vigil.feedback): stored on real PostgreSQL with the diagnosis it judged, exported as
the classifier's labelled JSONL, learnt from by `vigil model train --feedback-from-store`, and used to re-rank
similar incidents."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.worker import Worker
from typer.testing import CliRunner

from tests.conftest import ApiFactory
from tests.insights_support import Seed, alert_record, fresh_store, seed
from tests.rca_support import outage_logs
from tests.support import am_alert, am_webhook, eventually
from tests.test_diagnosis_flow import _diagnosed
from tests.test_incident_flow import detail, open_incident, status_of
from vigil.analysis.bundle import parse_bundle
from vigil.analysis.classify import (
    DEFAULT_CORPUS,
    Classifier,
    default_classifier,
    labelled_features,
    read_labelled,
    run_train,
)
from vigil.analysis.models import Category
from vigil.analysis.report import analyze, extract
from vigil.feedback import (
    DiagnosisFeedback,
    FeedbackVerdict,
    StoredFeedback,
    rerank_similar,
)
from vigil.feedback_training import features_from_record, stored_examples
from vigil.knowledge.models import Collection, KnowledgeHit
from vigil.models import IncidentStatus
from vigil.rca.engine import deterministic_rca
from vigil.settings import get_settings
from vigil.store.database import Store

T0 = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def own_db(database_url: str) -> AsyncIterator[tuple[str, Store]]:
    """A database of this test's own: the exports and training read every stored verdict."""
    async with fresh_store(database_url) as opened:
        yield opened


@pytest.fixture
def own_store(own_db: tuple[str, Store]) -> Store:
    return own_db[1]


def verdict(incident_id: str, kind: FeedbackVerdict, **extra: Any) -> DiagnosisFeedback:
    return DiagnosisFeedback(incident_id=incident_id, verdict=kind, actor="alice", **extra)


# --- the model ----------------------------------------------------------------------------------------------


def test_feedback_is_validated() -> None:
    with pytest.raises(ValidationError):
        DiagnosisFeedback.model_validate({"incident_id": "i", "verdict": "maybe", "actor": "a"})
    with pytest.raises(ValidationError):
        verdict("i", FeedbackVerdict.WRONG, component="x" * 201)
    with pytest.raises(ValidationError):
        verdict("i", FeedbackVerdict.WRONG, note="x" * 2001)
    with pytest.raises(ValidationError):
        verdict("i", FeedbackVerdict.WRONG, category="weather")
    with pytest.raises(ValidationError):
        DiagnosisFeedback(incident_id="i", verdict=FeedbackVerdict.RIGHT, actor="")
    assert verdict("i", FeedbackVerdict.WRONG, component="   ").component is None


# --- stored -------------------------------------------------------------------------------------------------


async def test_feedback_round_trip_keeps_the_diagnosis_it_judged(own_store: Store) -> None:
    await seed(own_store, Seed("inc-a", T0, diagnosis=(Category.NETWORK, "edge-proxy")))
    await seed(own_store, Seed("inc-b", T0))  # no diagnosis stored

    wrong = await own_store.record_feedback(
        verdict("inc-a", FeedbackVerdict.WRONG, category=Category.DATABASE, component="orders-db", note="pool, not DNS")
    )
    assert (wrong.diagnosed_category, wrong.diagnosed_component) == ("network", "edge-proxy")
    assert wrong.diagnosis_confidence == pytest.approx(0.7)
    assert wrong.category is Category.DATABASE
    assert wrong.component == "orders-db"
    assert wrong.note == "pool, not DNS"
    assert wrong.right_category is Category.DATABASE

    # A re-diagnosis later does not change what the first verdict judged; the next verdict judges the new one.
    await own_store.save_diagnosis(
        "inc-a",
        (await own_store.diagnosis("inc-a")).model_copy(  # type: ignore[union-attr]
            update={"category": Category.DATABASE}
        ),
    )
    confirmed = await own_store.record_feedback(verdict("inc-a", FeedbackVerdict.RIGHT))
    history = await own_store.feedback("inc-a")
    assert [f.id for f in history] == [wrong.id, confirmed.id]
    assert history[0].diagnosed_category == "network"
    assert confirmed.diagnosed_category == "database"
    assert confirmed.right_category is Category.DATABASE

    orphan = await own_store.record_feedback(verdict("inc-b", FeedbackVerdict.WRONG))
    assert orphan.diagnosed_category is None
    assert orphan.right_category is None

    latest = await own_store.latest_feedback()
    assert {k: v.id for k, v in latest.items()} == {"inc-a": confirmed.id, "inc-b": orphan.id}
    assert list(await own_store.latest_feedback(["inc-b", "nobody"])) == ["inc-b"]
    assert await own_store.feedback("nobody") == []


# --- features rebuilt from the record -----------------------------------------------------------------------


def _handmade(scenario: str) -> dict[str, Any]:
    from eval.incidentcorpus import handmade

    bundle: dict[str, Any] = next(row for row in handmade() if row["scenario"] == scenario)["bundle"]
    return bundle


@pytest.mark.parametrize("scenario", ["db-pool", "disk-full", "oom", "tls-expired"])
def test_features_rebuilt_from_the_stored_diagnosis_match_the_analysis(scenario: str) -> None:
    """The stored evidence + alerts give back the features the classifier saw: all detector and alert ones."""
    bundle = parse_bundle(_handmade(scenario))
    original = extract(bundle).features
    diagnosis = deterministic_rca(analyze(bundle))
    records = [
        alert_record(a.name, a.labels.get("service"), a.starts_at or T0).model_copy(
            update={"labels": a.labels, "annotations": a.annotations}
        )
        for a in bundle.alerts
    ]
    rebuilt = features_from_record(diagnosis, records)

    structural = ("det:", "detcat:", "alert:", "alabel:", "exc:")
    assert {k: v for k, v in rebuilt.items() if k.startswith(structural)} == pytest.approx(
        {k: v for k, v in original.items() if k.startswith(structural)}
    )
    shared = set(rebuilt) & set(original)
    assert len(shared) / len(set(rebuilt) | set(original)) > 0.8


# --- training and export ------------------------------------------------------------------------------------


def _flux_bundle(i: int) -> dict[str, Any]:
    """An incident of a kind the packaged corpus has never seen (as in test_classify)."""
    lines = [
        {"ts": f"2026-03-01T10:{m:02d}:00Z", "service": "reactor", "line": f"ERROR flux capacitor desynchronised {i}"}
        for m in range(6)
    ]
    alerts = [
        {
            "labels": {"alertname": "FluxCapacitorDesync", "service": "reactor", "severity": "critical"},
            "annotations": {"summary": "flux capacitor desynchronised"},
            "startsAt": "2026-03-01T10:00:00Z",
        }
    ]
    return {"alerts": alerts, "logs": lines}


async def _diagnosed_flux(store: Store, incident_id: str, i: int) -> None:
    bundle = parse_bundle(_flux_bundle(i))
    await seed(store, Seed(incident_id, T0 + timedelta(minutes=i), service="reactor", alerts=()))
    records = [
        alert_record("FluxCapacitorDesync", "reactor", T0).model_copy(
            update={"labels": bundle.alerts[0].labels, "annotations": bundle.alerts[0].annotations}
        )
    ]
    from vigil.models import PersistIncidentInput

    row = await store.get_incident(incident_id)
    assert row is not None
    await store.persist_incident(PersistIncidentInput(incident=row, alerts=records, generation="g1"))
    await store.save_diagnosis(incident_id, deterministic_rca(analyze(bundle)))


def _small_corpus(tmp_path: Path) -> Path:
    """A quarter of the packaged corpus, every category in it: training takes a second, not a minute."""
    lines = DEFAULT_CORPUS.read_text().splitlines()[::4]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_training_from_stored_feedback_changes_the_prediction(own_store: Store, tmp_path: Path) -> None:
    for i in range(4):
        await _diagnosed_flux(own_store, f"flux-{i}", i)
    flux = await own_store.diagnosis("flux-0")
    assert flux is not None
    for i in range(3):
        await own_store.record_feedback(
            verdict(f"flux-{i}", FeedbackVerdict.WRONG, category=Category.CAPACITY, component="reactor")
        )
    await own_store.record_feedback(verdict("flux-3", FeedbackVerdict.WRONG))  # no correction: nothing to learn

    examples = await stored_examples(own_store)
    assert [(row["incident_id"], row["category"], row["verdict"]) for row in examples] == [
        (f"flux-{i}", "capacity", "wrong") for i in range(3)
    ]
    assert examples[0]["diagnosed_category"] == flux.category.value
    assert any(name.startswith("alert:fluxcapacitordesync") for name in examples[0]["features"])

    corpus = _small_corpus(tmp_path)
    before_path, after_path = tmp_path / "before.json", tmp_path / "after.json"
    assert run_train(str(corpus), None, str(before_path)) == 0
    assert run_train(str(corpus), None, str(after_path), stored_feedback=examples) == 0
    default_classifier.cache_clear()

    new_incident = features_from_record(flux, await own_store.alerts("flux-3"))
    before = Classifier.load(before_path).predict(new_incident)
    after = Classifier.load(after_path).predict(new_incident)
    assert before.category is not Category.CAPACITY
    assert after.category is Category.CAPACITY
    assert after.probabilities["capacity"] > before.probabilities["capacity"]


async def test_export_and_train_from_the_store_on_the_command_line(
    own_db: tuple[str, Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_url, own_store = own_db
    await _diagnosed_flux(own_store, "flux-x", 7)
    await own_store.record_feedback(verdict("flux-x", FeedbackVerdict.RIGHT))
    diagnosed = (await own_store.diagnosis("flux-x")).category.value  # type: ignore[union-attr]
    from vigil.cli import app

    monkeypatch.setenv("DATABASE_URL", own_url)
    get_settings.cache_clear()
    out, model = tmp_path / "feedback.jsonl", tmp_path / "model.json"
    runner = CliRunner()
    try:  # the commands run their own event loop: in a thread, beside this test's
        exported = await asyncio.to_thread(runner.invoke, app, ["feedback", "export", "--out", str(out)])
        trained = await asyncio.to_thread(
            runner.invoke,
            app,
            ["model", "train", "--feedback-from-store", "--corpus", str(_small_corpus(tmp_path)), "--out", str(model)],
        )
    finally:
        get_settings.cache_clear()
        default_classifier.cache_clear()

    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["incident_id"], r["category"], r["verdict"]) for r in rows] == [("flux-x", diagnosed, "right")]
    assert labelled_features(read_labelled(out))[0][1] == diagnosed  # the format `--feedback` reads
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.output[trained.output.index("{") :])
    assert summary["stored_feedback_rows"] == 1
    assert Classifier.load(model).vocabulary  # a model was written


def test_cli_says_so_when_postgresql_is_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.support import free_port
    from vigil.cli import app

    monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/vigil")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        exported = runner.invoke(app, ["feedback", "export"])
        trained = runner.invoke(app, ["model", "train", "--feedback-from-store", "--out", str(tmp_path / "m.json")])
    finally:
        get_settings.cache_clear()
    assert exported.exit_code == 1
    assert "cannot read feedback from PostgreSQL" in exported.output
    assert trained.exit_code == 1
    assert "cannot read feedback from PostgreSQL" in trained.output
    assert not (tmp_path / "m.json").exists()


# --- similar incidents --------------------------------------------------------------------------------------


def stored(incident_id: str, kind: FeedbackVerdict, **extra: Any) -> StoredFeedback:
    return StoredFeedback(
        incident_id=incident_id,
        verdict=kind,
        actor="bob",
        id=1,
        at=T0,
        diagnosed_category="network",
        diagnosed_component="edge-proxy",
        diagnosis_confidence=0.6,
        **extra,
    )


def hit(source: str, score: float, collection: Collection = "incidents") -> KnowledgeHit:
    text = f"Incident {source}\nRoot cause: edge-proxy failed\nCategory: network"
    return KnowledgeHit(source=source, title=f"Incident {source}", score=score, text=text, collection=collection)


def test_rerank_puts_a_confirmed_incident_above_an_equal_one_marked_wrong() -> None:
    hits = [hit("wrong-one", 0.61), hit("plain", 0.61), hit("confirmed", 0.61), hit("far-better", 0.9)]
    latest = {
        "wrong-one": stored("wrong-one", FeedbackVerdict.WRONG),
        "confirmed": stored("confirmed", FeedbackVerdict.RIGHT),
    }

    ranked = rerank_similar(hits, latest)

    assert [h.source for h in ranked] == ["far-better", "confirmed", "plain", "wrong-one"]
    assert ranked[1].score == 0.61  # the shown score is the retrieval's
    assert ranked[1].text.endswith("Responder feedback: diagnosis confirmed by bob.")
    assert rerank_similar(hits, {}, k=2) == [hits[3], hits[0]]  # no feedback: retrieval order, stable


def test_rerank_shows_a_corrected_incident_with_its_corrected_category_and_component() -> None:
    corrected = stored("c", FeedbackVerdict.WRONG, category=Category.DATABASE, component="orders-db")
    runbook = hit("runbooks/db.md", 0.7, collection="runbooks")

    ranked = rerank_similar([runbook, hit("c", 0.5)], {"c": corrected, "runbooks/db.md": corrected})

    assert ranked[0] == runbook  # runbooks are never touched
    lines = ranked[1].text.splitlines()
    assert "Category: database (diagnosed: network)" in lines
    assert lines[-1] == "Responder feedback: diagnosis corrected by bob: category database, component orders-db."


# --- through the running stack ------------------------------------------------------------------------------


async def test_a_later_diagnosis_shows_a_corrected_similar_incident_corrected(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    """Feedback used where similar incidents are retrieved: the ml worker's diagnosis of a new incident lists an
    earlier, corrected one with the correction."""
    client = api(quiet_period_seconds=0.5, close_after_seconds=0.5)
    service = f"svc-{unique.lower()}"
    start = datetime.now(UTC) - timedelta(minutes=12)
    assert (await client.post("/api/v1/logs", json=outage_logs(service, start=start))).status_code == 202
    incident_id = await open_incident(client, [am_alert(unique, service=service, instance="i1")])
    first = (await _diagnosed(client, incident_id)).incident_id
    resolved = am_alert(unique, service=service, instance="i1", status="resolved")
    assert (await client.post("/api/v1/alerts/alertmanager", json=am_webhook([resolved]))).status_code == 202
    await eventually(lambda: detail(client, incident_id), lambda d: status_of(d) is IncidentStatus.CLOSED, timeout=60)
    await store.record_feedback(
        verdict(first, FeedbackVerdict.WRONG, category=Category.CAPACITY, component=f"{service}-pool")
    )

    again = await open_incident(client, [am_alert(f"{unique}Again", service=service, instance="i2")])
    later = await _diagnosed(client, again)
    assert later.state is not None
    assert later.state.diagnosis is not None
    similar = {hit.source: hit for hit in later.state.diagnosis.similar_incidents}
    assert first in similar, list(similar)
    lines = similar[first].text.splitlines()
    assert (
        lines[-1] == f"Responder feedback: diagnosis corrected by alice: category capacity, component {service}-pool."
    )
    assert any(line.startswith("Category: capacity (diagnosed: ") for line in lines)
