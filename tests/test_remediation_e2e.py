"""The loop closed end to end under `vigil up`, with the real Prometheus and Alertmanager and toyprod's real fixes.

1. `vigil chaos bad-deploy` -> Prometheus fires ToyprodHigh5xxRate -> an incident -> the diagnosis (deployment,
   from the deploy event and the new exception) -> Vigil proposes the rollback linked from the bad-deploy runbook
   its diagnosis retrieved (the 5xx runbook links no action) -> a person approves through the API -> toyprod
   runs the previous version -> the verification holds and the incident's alerts resolve -> resolved -> a
   postmortem with every stage.
2. `vigil chaos payments-failing` -> Vigil proposes the payments failover; a person rejects it and approves a
   restart instead, which cannot fix it -> the verification fails -> escalated, never "resolved" -> the failover,
   approved at last, heals it.

Timings are shortened as in test_monitoring_e2e (1s scrapes, `for: 5s`), and the actions are the shipped ones
with shorter verification windows (a copy in VIGIL_ACTIONS_DIRS, the shipped set switched off).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.vigil_up import REPO_ROOT, SHORT_MONITORING, VigilUp, person_env, poll
from vigil.remediation.catalogue import SHIPPED_ACTIONS
from vigil.stack.monitoring import find_binaries

VERIFY_FOR_SECONDS = 5
VERIFY_WITHIN_SECONDS = {"toyprod-restart": 45}
DEFAULT_WITHIN_SECONDS = 180


def _short_actions(folder: Path) -> Path:
    """The shipped actions with verification windows a test can wait for; everything else unchanged."""
    folder.mkdir()
    for path in sorted(SHIPPED_ACTIONS.glob("*.yml")):
        action = yaml.safe_load(path.read_text())
        action["verification"]["for_seconds"] = VERIFY_FOR_SECONDS
        action["verification"]["within_seconds"] = VERIFY_WITHIN_SECONDS.get(action["name"], DEFAULT_WITHIN_SECONDS)
        (folder / path.name).write_text(yaml.safe_dump(action, sort_keys=False))
    return folder


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[VigilUp]:
    find_binaries()
    env = person_env(tmp_path)
    env.update(
        {
            "VIGIL_API_TOKEN": secrets.token_urlsafe(16),
            **SHORT_MONITORING,
            "VIGIL_QUIET_PERIOD_SECONDS": "5",
            "VIGIL_RUNBOOKS_DIR": str(REPO_ROOT / "runbooks" / "toyprod"),  # the demo's runbooks: a short first index
            "VIGIL_SHIPPED_ACTIONS": "false",
            "VIGIL_REMEDIATION_POLICY": str(REPO_ROOT / "runbooks" / "policy.yml"),
            "VIGIL_ACTIONS_DIRS": str(_short_actions(tmp_path / "actions")),
        }
    )
    run = VigilUp(env, cwd=tmp_path)
    try:
        yield run
    finally:
        run.kill()


class Vigil:
    def __init__(self, stack: VigilUp, http: httpx.Client) -> None:
        self.stack = stack
        self.http = http

    def incidents(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/incidents", params={"service": "toyprod"})
        response.raise_for_status()
        return list(response.json())

    def detail(self, incident_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/incidents/{incident_id}")
        response.raise_for_status()
        return dict(response.json())

    def proposing(self, alertname: str, action: str) -> dict[str, Any] | None:
        """The detail of the open toyprod incident of `alertname` once its pending proposal is `action`."""
        for row in self.incidents():
            if row["status"] in ("resolved", "closed") or alertname.lower() not in str(row["group_key"]).lower():
                continue
            detail = self.detail(row["incident_id"])
            pending = (detail.get("state") or {}).get("pending_approval")
            if pending and pending["proposal"]["action"] == action:
                return detail
        return None

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return dict(response.json())

    def kinds(self, incident_id: str) -> list[str]:
        return [event["kind"] for event in self.detail(incident_id)["timeline"]]

    def explain(self, incident_id: str) -> str:
        detail = self.detail(incident_id)
        events = "\n".join(f"{e['at']} {e['kind']} ({e['actor']}): {e['message'][:400]}" for e in detail["timeline"])
        return f"{incident_id} {(detail.get('state') or {}).get('status')}\n{events}\n{self.stack.report()[-6000:]}"


def _admin(stack: VigilUp) -> dict[str, Any]:
    token = (stack.state_dir / "chaos-token").read_text().strip()
    url = f"http://127.0.0.1:{stack.env['VIGIL_TOYPROD_PORT']}/admin"
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10, trust_env=False)
    response.raise_for_status()
    return dict(response.json())


@pytest.mark.timeout(900)
def test_chaos_to_verified_recovery_and_a_wrong_action_escalated(stack: VigilUp) -> None:
    env = stack.env
    stack.wait_up(timeout=180)
    headers = {"Authorization": f"Bearer {env['VIGIL_API_TOKEN']}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{env['VIGIL_API_PORT']}", headers=headers, timeout=30) as http:
        vigil = Vigil(stack, http)
        before = _admin(stack)

        # 1. A bad deploy: Vigil proposes the rollback, a person approves it, recovery is verified.
        stack.vigil("chaos", "bad-deploy")
        assert _admin(stack)["version"] != before["version"]
        detail = poll(
            lambda: vigil.proposing("ToyprodHigh5xxRate", "toyprod-rollback-deploy"),
            240,
            lambda: f"a proposed rollback; incidents: {vigil.incidents()}\n{stack.report()[-6000:]}",
        )
        incident_id = detail["incident_id"]
        state = detail["state"]
        assert state["diagnosis"]["category"] == "deployment", vigil.explain(incident_id)
        pending = state["pending_approval"]
        assert pending["proposal"]["proposed_by"] == "vigil"
        assert pending["proposal"]["params"] == {"service": "toyprod"}
        assert pending["policy_rule"] == "toyprod-risky-fixes-approved"
        vigil.post(
            f"/api/v1/incidents/{incident_id}/approval",
            {"decision": "approve", "by": "oncall-ana", "proposal_id": pending["proposal_id"]},
        )
        poll(
            lambda: True if _admin(stack)["version"] == before["version"] else None,
            60,
            lambda: f"toyprod back on {before['version']}: {_admin(stack)}\n{vigil.explain(incident_id)}",
        )
        poll(
            lambda: True if (vigil.detail(incident_id).get("state") or {}).get("status") == "resolved" else None,
            240,
            lambda: f"the incident resolved after the rollback\n{vigil.explain(incident_id)}",
        )
        kinds = vigil.kinds(incident_id)
        stages = ["opened", "diagnosed", "remediation_proposed", "approved", "remediation_run", "verified", "resolved"]
        assert [kind for kind in kinds if kind in stages][: len(stages)] == stages, vigil.explain(incident_id)
        assert "not_recovered" not in kinds
        postmortem = http.get(f"/api/v1/incidents/{incident_id}/postmortem")
        assert postmortem.status_code == 200
        for stage in ("| remediation_run |", "| verified |", "Time to diagnose", "Time to mitigate", "Time to resolve"):
            assert stage in postmortem.text, (stage, postmortem.text)

        # 2. Payments failing: the wrong action (a restart) does not verify and is escalated, never resolved.
        stack.vigil("chaos", "payments-failing")
        detail = poll(
            lambda: vigil.proposing("ToyprodDependencyDown", "toyprod-payments-failover"),
            240,
            lambda: f"a proposed failover; incidents: {vigil.incidents()}\n{stack.report()[-6000:]}",
        )
        incident_id = detail["incident_id"]
        pending = detail["state"]["pending_approval"]
        vigil.post(
            f"/api/v1/incidents/{incident_id}/approval",
            {"decision": "reject", "by": "oncall-ana", "reason": "try a restart first"},
        )
        restart = vigil.post(
            f"/api/v1/incidents/{incident_id}/remediation",
            {"action": "toyprod-restart", "proposed_by": "oncall-ana", "reason": "a restart fixes most things"},
        )
        vigil.post(
            f"/api/v1/incidents/{incident_id}/approval",
            {"decision": "approve", "by": "oncall-bob", "proposal_id": restart["proposal_id"]},
        )
        poll(
            lambda: True if "escalated" in vigil.kinds(incident_id) else None,
            180,
            lambda: f"the failed restart escalated\n{vigil.explain(incident_id)}",
        )
        kinds = vigil.kinds(incident_id)
        assert kinds.index("remediation_run") < kinds.index("not_recovered") < kinds.index("escalated"), kinds
        assert "resolved" not in kinds, kinds
        assert "verified" not in kinds, kinds
        state = vigil.detail(incident_id)["state"]
        assert [run["verification"] for run in state["actions"]] == ["not_recovered"]
        if state["status"] == "awaiting_approval":  # Vigil offers the next linked action it has not tried, to a person
            offered = state["pending_approval"]
            assert offered["proposal"]["proposed_by"] == "vigil"
            assert offered["proposal"]["action"] not in ("toyprod-restart", "toyprod-payments-failover")
            approvers = [e["actor"] for e in vigil.detail(incident_id)["timeline"] if e["kind"] == "approved"]
            assert not [a for a in approvers if a.startswith("policy:")], approvers  # never automatic after a failure
            vigil.post(
                f"/api/v1/incidents/{incident_id}/approval",
                {"decision": "reject", "by": "oncall-ana", "proposal_id": offered["proposal_id"]},
            )
        else:
            assert state["status"] == "monitoring", state["status"]

        failover = vigil.post(
            f"/api/v1/incidents/{incident_id}/remediation",
            {"action": "toyprod-payments-failover", "proposed_by": "oncall-bob"},
        )
        vigil.post(
            f"/api/v1/incidents/{incident_id}/approval",
            {"decision": "approve", "by": "oncall-ana", "proposal_id": failover["proposal_id"]},
        )
        poll(
            lambda: True if (vigil.detail(incident_id).get("state") or {}).get("status") == "resolved" else None,
            240,
            lambda: f"the incident resolved after the failover\n{vigil.explain(incident_id)}",
        )
        assert _admin(stack)["payments_provider"] != before["payments_provider"]
        state = vigil.detail(incident_id)["state"]
        assert [run["verification"] for run in state["actions"]] == ["not_recovered", "recovered"]
