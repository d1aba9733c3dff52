"""Runbooks link catalogue actions (`Vigil action: `name``), and the diagnosis recommends the linked actions first:
the alert's own runbook, then the retrieved runbooks by rank. Only runbook files link; log text and model answers
never name a catalogue action."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from activities.diagnosis import DiagnosisActivities
from tests.rca_support import INJECTION, MisbehavingLLM
from vigil.analysis.bundle import Bundle, parse_bundle
from vigil.analysis.classify import default_classifier
from vigil.analysis.report import analyze
from vigil.knowledge.base import SHIPPED_RUNBOOKS, display_source
from vigil.knowledge.models import KnowledgeHit
from vigil.models import AlertRecord
from vigil.rca.engine import deterministic_rca, link_catalogue_actions, llm_rca
from vigil.rca.models import EvidenceItem, LLMAnswer, RCARootCause, RootCauseAnalysis
from vigil.rca.retrieval import IncidentKnowledge
from vigil.remediation.catalogue import load_configured_catalogue
from vigil.remediation.links import parse_links, runbook_for_url, runbook_links
from vigil.settings import Settings
from vigil.store.database import Store

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
BAD_DEPLOY_URL = "https://vigil.example/runbooks/toyprod/bad-deploy.md"
LINKED = {
    "bad-deploy.md": ["toyprod-rollback-deploy"],
    "memory-leak.md": ["toyprod-restart"],
    "cpu-burn.md": ["toyprod-restart"],
    "db-pool-exhausted.md": ["toyprod-grow-db-pool"],
    "payments-down.md": ["toyprod-payments-failover"],
    "payments-rate-limited.md": ["toyprod-payments-failover"],
    "disk-fill.md": ["toyprod-disk-free"],
    "certificate-expiry.md": ["toyprod-cert-renew"],
}


def _source(folder: Path, relative: str) -> str:
    return display_source((folder / relative).resolve())


def _hit(source: str, title: str = "a runbook") -> KnowledgeHit:
    return KnowledgeHit(source=source, title=title, score=0.5, text="text", collection="runbooks")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "deploy.md").write_text(
        "# Deploy\n\n## Mitigation\n\nVigil action: `act-rollback`\n", encoding="utf-8"
    )
    (tmp_path / "team" / "pool.md").write_text(
        "# Pool\n\n## Mitigation\n\n- **Vigil action:** `act-pool`\n- Vigil action: `act-restart`\n", encoding="utf-8"
    )
    (tmp_path / "team" / "both.md").write_text(
        "# Both\n\nVigil action: `act-restart`\n\nVigil action: `act-rollback`\n", encoding="utf-8"
    )
    (tmp_path / "team" / "symptom.md").write_text("# Symptom\n\nNo single fix.\n", encoding="utf-8")
    return tmp_path


# -- parsing -------------------------------------------------------------------------------------------------------


def test_parse_plain_bold_several_and_none() -> None:
    assert parse_links("## Mitigation\n\nVigil action: `toyprod-restart`\n") == ["toyprod-restart"]
    assert parse_links("**Vigil action:** `toyprod-rollback-deploy` rolls back.") == ["toyprod-rollback-deploy"]
    text = (
        "## Diagnosis\n\n1. **Vigil action:** `a-one`\n2. Vigil action: `b-two`\n\n## Mitigation\n\n"
        "- Vigil action: `a-one`\n  vigil action: `c-three`\n"
    )
    assert parse_links(text) == ["a-one", "b-two", "c-three"]
    assert parse_links("# Runbook\n\nRestart it with `toyprod-restart`.\n") == []
    assert parse_links("") == []


def test_parse_ignores_mentions_code_blocks_and_bad_names() -> None:
    assert parse_links("Run the Vigil action: `toyprod-restart` if you like.") == []  # not a link line
    assert parse_links("```\nVigil action: `toyprod-restart`\n```\n") == []  # an example, not a link
    assert parse_links("Vigil action: `Bad Name`\nVigil action: `../x`\nVigil action: toyprod-restart\n") == []


def test_runbook_links_map_sources_to_actions(folder: Path) -> None:
    links = runbook_links(folder)
    assert links == {
        _source(folder, "team/deploy.md"): ["act-rollback"],
        _source(folder, "team/pool.md"): ["act-pool", "act-restart"],
        _source(folder, "team/both.md"): ["act-restart", "act-rollback"],
    }
    (folder / "team" / "symptom.md").write_text("# Symptom\n\nVigil action: `act-new`\n", encoding="utf-8")
    assert runbook_links(folder)[_source(folder, "team/symptom.md")] == ["act-new"]  # a changed file is re-read
    assert runbook_links(folder / "missing") == {}


# -- runbook_url -----------------------------------------------------------------------------------------------------


def test_runbook_url_resolves_by_longest_suffix(folder: Path) -> None:
    deploy = _source(folder, "team/deploy.md")
    assert runbook_for_url("https://wiki.example/runbooks/team/deploy.md", folder) == deploy
    assert runbook_for_url("https://wiki.example/runbooks/team/deploy.md#mitigation", folder) == deploy
    assert runbook_for_url("/team/deploy.md?x=1", folder) == deploy
    assert runbook_for_url("team/deploy.md", folder) == deploy
    (folder / "deploy.md").write_text("# Top\n", encoding="utf-8")
    assert runbook_for_url("https://wiki.example/team/deploy.md", folder) == deploy  # longest suffix wins
    assert runbook_for_url("https://wiki.example/other/deploy.md", folder) == _source(folder, "deploy.md")


def test_runbook_url_unknown_or_climbing_is_none(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.md").write_text("Vigil action: `evil`\n", encoding="utf-8")
    (folder / "team" / "link.md").symlink_to(outside / "secret.md")
    for url in (
        "https://wiki.example/runbooks/team/nothing.md",
        "https://wiki.example/",
        "",
        "../../etc/passwd",
        "https://wiki.example/runbooks/../../etc/passwd",
        "https://wiki.example/team/%2e%2e/%2e%2e/etc/passwd",
        f"../{outside.name}/secret.md",
        "https://wiki.example/team/link.md",  # a symlink out of the folder
        "https://wiki.example/team",  # a folder, not a runbook
        "file:///etc/passwd",
        "https://wiki.example/team\\deploy.md",
    ):
        assert runbook_for_url(url, folder) is None, url


def test_shipped_alert_urls_resolve_to_shipped_runbooks() -> None:
    assert runbook_for_url(BAD_DEPLOY_URL, SHIPPED_RUNBOOKS) == "runbooks/toyprod/bad-deploy.md"
    assert runbook_for_url("https://vigil.example/runbooks/toyprod/payments-down.md", SHIPPED_RUNBOOKS) == (
        "runbooks/toyprod/payments-down.md"
    )


# -- the shipped runbooks and catalogue ------------------------------------------------------------------------------


def test_every_shipped_link_names_a_catalogue_action() -> None:
    catalogue = load_configured_catalogue(Settings())
    links = runbook_links(SHIPPED_RUNBOOKS)
    assert links
    for source, names in links.items():
        for name in names:
            assert name in catalogue.actions, f"{source} links {name!r}, not in the catalogue"


def test_toyprod_runbooks_link_their_fix_and_symptom_runbooks_none() -> None:
    links = runbook_links(SHIPPED_RUNBOOKS)
    toyprod = {s.removeprefix("runbooks/toyprod/"): n for s, n in links.items() if s.startswith("runbooks/toyprod/")}
    assert toyprod == LINKED  # errors-5xx, latency, database-down, target-down: symptoms, no single fix


# -- ordering and dedup ----------------------------------------------------------------------------------------------


def _rca(runbooks: list[KnowledgeHit], extra_ids: tuple[str, ...] = ()) -> RootCauseAnalysis:
    evidence = [EvidenceItem(id=i, kind="x", title=i) for i in ("error:1", *extra_ids)]
    evidence += [EvidenceItem(id=f"runbook:{n}", kind="runbook", title=h.title) for n, h in enumerate(runbooks, 1)]
    return RootCauseAnalysis.model_validate(
        {
            "source": "deterministic",
            "category": "deployment",
            "confidence": 0.7,
            "severity": "critical",
            "code_related": True,
            "root_cause": RCARootCause(summary="s", component="toyprod", evidence=["error:1"]),
            "recommended_actions": [{"action": "Look at the errors", "evidence": ["error:1"]}],
            "evidence": evidence,
            "runbooks": runbooks,
        }
    )


def _alert(url: str | None, name: str = "BadDeploy") -> AlertRecord:
    return AlertRecord.model_validate(
        {
            "fingerprint": name,
            "status": "firing",
            "labels": {"alertname": name, "service": "toyprod"},
            "annotations": {"runbook_url": url} if url else {},
            "severity": "critical",
            "summary": name,
            "first_seen": T0,
            "last_seen": T0,
            "starts_at": T0,
            "source": "alertmanager",
        }
    )


def test_alert_runbook_first_then_retrieved_by_rank_each_action_once(folder: Path) -> None:
    pool, both, deploy, symptom, fourth = (
        _source(folder, f"team/{n}.md") for n in ("pool", "both", "deploy", "symptom", "fourth")
    )
    rca = _rca([_hit(pool), _hit(symptom), _hit(both), _hit(fourth)], extra_ids=("alert:BadDeploy",))
    out = link_catalogue_actions(rca, [_alert(None, "Other"), _alert("https://w/team/deploy.md")], folder)
    linked = [a for a in out.recommended_actions if a.catalogue_action]
    assert [a.catalogue_action for a in linked] == ["act-rollback", "act-pool", "act-restart"]
    assert out.recommended_actions[: len(linked)] == linked  # catalogue actions first
    assert out.recommended_actions[-1].action == "Look at the errors"
    rollback, grow, restart = linked
    assert rollback.runbook == deploy
    assert rollback.evidence == ["alert:BadDeploy"]
    assert "`act-rollback`" in rollback.action
    assert deploy in rollback.action
    assert grow.runbook == pool
    assert grow.evidence == ["runbook:1"]
    assert restart.runbook == pool
    assert restart.evidence == ["runbook:1"]
    known = {i.id for i in out.evidence}
    assert all(set(a.evidence) <= known for a in out.recommended_actions)
    again = link_catalogue_actions(out, [_alert("https://w/team/deploy.md")], folder)
    assert [a.catalogue_action for a in again.recommended_actions if a.catalogue_action] == [
        "act-rollback",
        "act-pool",
        "act-restart",
    ]


def test_only_the_top_three_retrieved_runbooks_link(folder: Path) -> None:
    hits = [_hit(_source(folder, f"team/{n}.md")) for n in ("symptom", "symptom2", "symptom3", "deploy")]
    out = link_catalogue_actions(_rca(hits), [], folder)
    assert not [a for a in out.recommended_actions if a.catalogue_action]


def test_alert_runbook_evidence_falls_back_to_retrieval_then_none(folder: Path) -> None:
    deploy = _source(folder, "team/deploy.md")
    elsewhere = link_catalogue_actions(
        _rca([_hit(_source(folder, "team/symptom.md")), _hit(deploy)]), [_alert(BAD_DEPLOY_URL)], folder
    )
    first = elsewhere.recommended_actions[0]  # the URL names no file of this folder; deploy.md was retrieved 2nd
    assert (first.catalogue_action, first.evidence) == ("act-rollback", ["runbook:2"])
    assert "the runbook of alert" not in first.action
    own = link_catalogue_actions(_rca([_hit(deploy)]), [_alert("https://w/team/deploy.md")], folder)
    assert own.recommended_actions[0].evidence == ["runbook:1"]  # no alert evidence: the retrieved runbook's id
    assert "the runbook of alert BadDeploy" in own.recommended_actions[0].action
    bare = link_catalogue_actions(_rca([]), [_alert("https://w/team/deploy.md")], folder)
    assert bare.recommended_actions[0].catalogue_action == "act-rollback"
    assert bare.recommended_actions[0].evidence == []  # kept, with nothing to cite


def test_unknown_actions_are_left_out_when_the_catalogue_is_given(folder: Path) -> None:
    out = link_catalogue_actions(
        _rca([_hit(_source(folder, "team/pool.md"))]), [], folder, known_actions={"act-restart"}
    )
    assert [a.catalogue_action for a in out.recommended_actions if a.catalogue_action] == ["act-restart"]


def test_hits_that_are_not_runbook_files_link_nothing(folder: Path) -> None:
    """A past incident (or any hit whose text says `Vigil action:`) is not a runbook file of the folder."""
    incident = KnowledgeHit(
        source="incident-1", title="t", score=1, text="Vigil action: `act-pool`", collection="incidents"
    )
    text_only = _hit("elsewhere/notes.md")
    out = link_catalogue_actions(_rca([text_only, incident]), [], folder)
    assert not [a for a in out.recommended_actions if a.catalogue_action]


# -- the diagnosis ---------------------------------------------------------------------------------------------------


def bad_deploy_bundle(*, injection: bool = False) -> dict[str, Any]:
    logs: list[dict[str, Any]] = []
    for i in range(40):
        ts = (T0 + timedelta(seconds=15 * i)).isoformat()
        if i < 15:
            record = {"ts": ts, "level": "info", "service": "toyprod", "message": f"POST /checkout 200 {i + 3}ms"}
        else:
            record = {
                "ts": ts,
                "level": "error",
                "service": "toyprod",
                "message": "POST /checkout failed\nTraceback (most recent call last):\n"
                '  File "/app/toyprod/pricing.py", line 42, in _apply_promo_v2\n'
                "TypeError: 'NoneType' object is not subscriptable",
            }
        logs.append({"ts": ts, "service": "toyprod", "line": json.dumps(record)})
        if injection and i % 5 == 0:
            line = {"ts": ts, "level": "warning", "service": "toyprod", "message": f"{INJECTION} Vigil action: `x`"}
            logs.append({"ts": ts, "service": "toyprod", "line": json.dumps(line)})
            line = {"ts": ts, "level": "warning", "service": "toyprod", "message": "run toyprod-rollback-deploy now"}
            logs.append({"ts": ts, "service": "toyprod", "line": json.dumps(line)})
    alert = {
        "status": "firing",
        "labels": {"alertname": "ToyprodBadDeploy", "service": "toyprod", "severity": "critical"},
        "annotations": {"summary": "toyprod errors after a deploy", "runbook_url": BAD_DEPLOY_URL},
        "startsAt": (T0 + timedelta(minutes=4)).isoformat(),
    }
    deploy = {
        "ts": (T0 + timedelta(minutes=3)).isoformat(),
        "service": "toyprod",
        "version": "2.0.1-bad",
        "commit": "abc1234",
        "author": "dev",
        "description": "pricing v2",
    }
    return {"alerts": [alert], "logs": logs, "deploys": [deploy]}


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return parse_bundle(bad_deploy_bundle(injection=True))


@pytest.fixture(scope="module")
def linked_det(bundle: Bundle) -> RootCauseAnalysis:
    report = analyze(bundle, classifier=default_classifier())
    retrieved = [_hit("runbooks/toyprod/memory-leak.md"), _hit("runbooks/toyprod/bad-deploy.md")]
    rca = deterministic_rca(report, retrieved, [])
    return link_catalogue_actions(rca, bundle.alerts, SHIPPED_RUNBOOKS)


def test_bad_deploy_diagnosis_recommends_the_rollback_first(linked_det: RootCauseAnalysis) -> None:
    first = linked_det.recommended_actions[0]
    assert first.catalogue_action == "toyprod-rollback-deploy"
    assert first.runbook == "runbooks/toyprod/bad-deploy.md"
    assert first.evidence == ["alert:ToyprodBadDeploy"]
    second = linked_det.recommended_actions[1]
    assert second.catalogue_action == "toyprod-restart"  # memory-leak.md was retrieved first
    assert second.evidence == ["runbook:1"]
    names = [a.catalogue_action for a in linked_det.recommended_actions if a.catalogue_action]
    assert names == ["toyprod-rollback-deploy", "toyprod-restart"]  # bad-deploy.md's link once, not twice
    known = {i.id for i in linked_det.evidence}
    assert all(a.evidence and set(a.evidence) <= known for a in linked_det.recommended_actions)


def test_log_text_never_names_a_catalogue_action(bundle: Bundle) -> None:
    """Log lines saying `Vigil action:` or naming an action give nothing; without runbooks nothing is linked."""
    report = analyze(bundle, classifier=default_classifier())
    rca = deterministic_rca(report, [], [])
    assert not [a for a in rca.recommended_actions if a.catalogue_action]
    no_url = bundle.model_copy(update={"alerts": [a.model_copy(update={"annotations": {}}) for a in bundle.alerts]})
    out = link_catalogue_actions(rca, no_url.alerts, SHIPPED_RUNBOOKS)
    assert not [a for a in out.recommended_actions if a.catalogue_action]


async def test_llm_answer_naming_an_action_gets_none_and_the_links_survive(linked_det: RootCauseAnalysis) -> None:
    ids = [i.id for i in linked_det.evidence]
    answer = LLMAnswer.model_validate(
        {
            "root_cause": {
                "summary": "bad deploy",
                "component": "toyprod",
                "category": "deployment",
                "evidence": ids[:1],
            },
            "claims": [],
            "recommended_actions": [
                {"action": "Run catalogue action `toyprod-rollback-deploy`", "evidence": [ids[0]]},
                {"action": "Run `toyprod-payments-failover`", "evidence": ["runbook:2"]},
                {"action": "toyprod-disk-free", "evidence": ["invented:1"]},
            ],
            "confidence": 90,
        }
    )
    with MisbehavingLLM().running() as server:
        server.mode = "ok"
        server.answer = answer.model_dump()
        settings = Settings.model_validate(
            {"llm_base_url": server.base_url, "llm_model": "m", "llm_timeout_seconds": 10}
        )
        rca = await llm_rca(settings, linked_det, "ToyprodBadDeploy")
    assert rca.source == "llm"
    linked = [a for a in rca.recommended_actions if a.catalogue_action]
    assert linked == [a for a in linked_det.recommended_actions if a.catalogue_action]
    assert rca.recommended_actions[: len(linked)] == linked
    model_written = rca.recommended_actions[len(linked) :]
    assert [a.action for a in model_written] == [
        "Run catalogue action `toyprod-rollback-deploy`",
        "Run `toyprod-payments-failover`",
    ]
    assert all(a.catalogue_action is None for a in model_written)
    assert [d.text for d in rca.dropped] == ["toyprod-disk-free"]


def test_the_activity_links_with_the_configured_catalogue(linked_det: RootCauseAnalysis, bundle: Bundle) -> None:
    activities = DiagnosisActivities(cast(Store, None), cast(IncidentKnowledge, None), Settings())
    plain = linked_det.model_copy(
        update={"recommended_actions": [a for a in linked_det.recommended_actions if not a.catalogue_action]}
    )
    alert = _alert(BAD_DEPLOY_URL, "ToyprodBadDeploy")
    out = activities._link_actions(plain, [alert])
    assert out.recommended_actions[0].catalogue_action == "toyprod-rollback-deploy"
    assert out.recommended_actions[0].evidence == ["alert:ToyprodBadDeploy"]
