"""Remediation catalogue and policy: the shipped files load, invalid files fail naming file and field, binding
refuses injection, policy decisions, and the `vigil actions` commands."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from vigil.cli import app
from vigil.models import Severity
from vigil.remediation.actions import Action, PromqlVerification
from vigil.remediation.catalogue import Catalogue, load_catalogue, load_configured_catalogue
from vigil.remediation.errors import BindingError, RemediationConfigError
from vigil.remediation.parameters import bind
from vigil.remediation.policy import Policy, decide, load_configured_policy, load_policy
from vigil.remediation.templates import resolve_reference
from vigil.settings import Settings, get_settings

VALID = """\
name: {name}
description: Restart a service.
parameters:
  service:
    type: string
    from: alert.labels.service
    pattern: "[a-z][a-z0-9-]{{0,30}}"
executor:
  type: http
  url: https://ops.example/restart/{{service}}
  headers:
    Authorization: Bearer ${{CHAOS_TOKEN}}
timeout_seconds: 30
idempotent: true
verification:
  alerts_resolved: true
  within_seconds: 300
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(paths: list[Path], settings: Settings | None = None) -> list[str]:
    with pytest.raises(RemediationConfigError) as caught:
        load_catalogue(paths, settings or Settings())
    return [str(problem) for problem in caught.value.problems]


def action(**overrides: object) -> Action:
    import yaml

    document = yaml.safe_load(VALID.format(name="restart-service"))
    document.update(overrides)
    return Action.model_validate(document)


@pytest.fixture(scope="module")
def shipped() -> Catalogue:
    return load_configured_catalogue(Settings())


def test_shipped_catalogue_and_policy_load(shipped: Catalogue) -> None:
    fixes = {"rollback", "restart", "db-pool", "payments-failover", "disk-free", "cert-renew"}
    urls = {a.executor.url.removeprefix("${TOYPROD_URL}/admin/") for a in shipped.actions.values()}  # type: ignore[union-attr]
    assert urls == fixes
    assert all(a.targets_toyprod and isinstance(a.verification, PromqlVerification) for a in shipped.actions.values())
    assert len(shipped.actions) == len(fixes)  # one action per fix: toyprod's pool only grows, nothing to undo
    policy = load_configured_policy(Settings(), shipped)
    assert policy.rules
    labels = {"service": "toyprod", "namespace": "demo"}
    assert bind(shipped.get("toyprod-grow-db-pool"), labels, None) == {"service": "toyprod", "size": "20"}
    with pytest.raises(BindingError, match="service"):
        bind(shipped.get("toyprod-restart"), {"service": "vigil-api"}, None)


def test_actions_dirs_add_to_the_shipped_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "extra.yml", VALID.format(name="restart-service"))
    monkeypatch.setenv("VIGIL_ACTIONS_DIRS", str(tmp_path))
    catalogue = load_configured_catalogue(Settings())
    assert "restart-service" in catalogue.actions
    assert "toyprod-restart" in catalogue.actions


def test_a_list_of_actions_in_one_file(tmp_path: Path) -> None:
    body = textwrap.indent(VALID.format(name="a"), "  ")[2:] + "- " + textwrap.indent(VALID.format(name="b"), "  ")[2:]
    path = write(tmp_path, "two.yml", "- " + body)
    assert sorted(load_catalogue([path], Settings()).actions) == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", ": invalid YAML at line"),
        (VALID.format(name="x").replace("timeout_seconds: 30\n", ""), ": timeout_seconds: Field required"),
        (VALID.format(name="x").replace("type: http", "type: ssh"), ": executor: Input tag 'ssh'"),
        (VALID.format(name="x").replace("{service}", "{host}"), ": executor.url: placeholder {host} is not a"),
        (VALID.format(name="x").replace("${CHAOS_TOKEN}", "${AWS_KEY}"), "executor.headers.Authorization: unknown"),
        (VALID.format(name="x") + "rollback: nowhere\n", ": rollback: unknown action 'nowhere'"),
        (
            VALID.format(name="x").replace(
                "  alerts_resolved: true\n  within_seconds: 300", "  promql: up\n  condition: '~ 1'\n  for_seconds: 60"
            ),
            ": verification.promql.condition: condition must be an operator",
        ),
        (
            VALID.format(name="x").replace('    pattern: "[a-z][a-z0-9-]{0,30}"\n', ""),
            ": parameters.service: a string parameter needs a pattern or an enum",
        ),
        (
            VALID.format(name="x").replace(
                "type: http\n  url: https://ops.example/restart/{service}\n  headers:\n"
                "    Authorization: Bearer ${CHAOS_TOKEN}",
                "type: kubectl\n  args: [rollout, restart, '{service}']",
            ),
            ": executor.type: kubectl actions are disabled",
        ),
    ],
    ids=["yaml", "missing", "executor", "placeholder", "reference", "rollback", "condition", "injection", "kubectl"],
)
def test_invalid_file_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "bad.yml", text)
    problems = problems_of([path])
    assert any(p.startswith(str(path)) and expected in p for p in problems), problems


def test_kubectl_loads_when_enabled(tmp_path: Path) -> None:
    text = VALID.format(name="x").replace(
        "type: http\n  url: https://ops.example/restart/{service}\n  headers:\n"
        "    Authorization: Bearer ${CHAOS_TOKEN}",
        "type: kubectl\n  args: [rollout, restart, 'deploy/{service}']",
    )
    path = write(tmp_path, "k.yml", text)
    assert "x" in load_catalogue([path], Settings(kubectl_actions_enabled=True)).actions


def test_duplicates_and_all_errors_are_collected(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yml", VALID.format(name="same"))
    second = write(tmp_path, "b.yml", VALID.format(name="same").replace("idempotent: true", "idempotent: maybe"))
    third = write(tmp_path, "c.yml", VALID.format(name="same"))
    problems = problems_of([tmp_path])
    assert f"{third}: name: duplicate name 'same', also in {first}" in problems
    assert any(p.startswith(f"{second}: idempotent:") for p in problems)


def test_script_paths_stay_in_the_allowlisted_directory(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "flush.sh").write_text("#!/bin/sh\n")
    executor = (
        "type: http\n  url: https://ops.example/restart/{service}\n  headers:\n    Authorization: Bearer ${CHAOS_TOKEN}"
    )
    good = VALID.format(name="x").replace(executor, "type: script\n  path: flush.sh\n  args: ['{service}']")
    bad = good.replace("path: flush.sh", "path: ../flush.sh")
    settings = Settings(remediation_scripts_dir=scripts)
    assert "x" in load_catalogue([write(tmp_path, "good.yml", good)], settings).actions
    assert any(
        "executor.path:" in p and "relative" in p for p in problems_of([write(tmp_path, "bad.yml", bad)], settings)
    )
    assert any("VIGIL_REMEDIATION_SCRIPTS_DIR" in p for p in problems_of([tmp_path / "good.yml"]))


@pytest.mark.parametrize(
    "value", ["x; rm -rf /", "../../etc", "api\nX-Injected: 1", "api?x=1&admin=true", "a" * 300, "$(id)", ""]
)
def test_binding_refuses_injection(value: str) -> None:
    with pytest.raises(BindingError, match="service"):
        bind(action(), {"service": value}, None)


def test_binding_types_sources_and_defaults() -> None:
    parameters = {
        "service": {"type": "string", "from": "diagnosis.component", "pattern": "[a-z]+"},
        "replicas": {"type": "integer", "from": "alert.labels.replicas", "default": 2, "minimum": 1, "maximum": 5},
        "force": {"type": "boolean", "default": False},
    }
    bound_action = action(parameters=parameters)
    assert bind(bound_action, {"replicas": "4"}, "payments") == {
        "service": "payments",
        "replicas": "4",
        "force": "false",
    }
    assert bind(bound_action, {}, "payments")["replicas"] == "2"
    with pytest.raises(BindingError, match=r"replicas: '9' from alert.labels.replicas refused: above maximum 5"):
        bind(bound_action, {"replicas": "9"}, "payments")
    with pytest.raises(BindingError, match=r"replicas: '1\.5'.*expected an integer"):
        bind(bound_action, {"replicas": "1.5"}, "payments")
    with pytest.raises(BindingError, match="service: no value"):
        bind(bound_action, {}, None)


def test_out_of_schema_default_fails_at_load(tmp_path: Path) -> None:
    text = VALID.format(name="x").replace("    from: alert.labels.service\n", "    default: UPPER\n")
    path = write(tmp_path, "d.yml", text)
    assert any("parameters.service: does not match pattern" in p for p in problems_of([path]))


def test_secret_references_resolve_from_settings_only(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, chaos_token=SecretStr("s3cret"), toyprod_port=8123)
    assert resolve_reference("CHAOS_TOKEN", settings) == "s3cret"
    assert resolve_reference("TOYPROD_URL", settings) == "http://127.0.0.1:8123"
    with pytest.raises(ValueError, match="unknown"):
        resolve_reference("HOME", settings)
    in_url = VALID.format(name="x").replace("restart/{service}", "restart/{service}?t=${CHAOS_TOKEN}")
    assert any(
        "secret ${CHAOS_TOKEN} is allowed in headers only" in p for p in problems_of([write(tmp_path, "u.yml", in_url)])
    )


def policy(text: str) -> Policy:
    return Policy.model_validate(__import__("yaml").safe_load(textwrap.dedent(text)))


RULES = """\
dry_run: auto
rules:
  - name: never-prod-kubectl
    actions: ["*-kubectl"]
    environments: [prod]
    mode: never
  - name: restart-auto
    actions: [restart-*]
    namespaces: [demo]
    min_severity: warning
    mode: auto
    min_confidence: 0.8
"""


def test_policy_decisions() -> None:
    rules = policy(RULES)
    restart = action()
    demo = {"namespace": "demo"}
    auto = decide(rules, restart, demo, Severity.CRITICAL, 0.9)
    assert (auto.mode, auto.rule_index, auto.rule_name, auto.dry_run) == ("auto", 1, "restart-auto", True)
    assert "0.9 >= 0.8" in auto.reason
    low = decide(rules, restart, demo, Severity.CRITICAL, 0.5)
    assert (low.mode, low.rule_name) == ("approval", "restart-auto")
    assert decide(rules, restart, demo, Severity.INFO, 0.99).rule_index is None  # below min_severity
    unmatched = decide(rules, restart, {"namespace": "other"}, Severity.CRITICAL, 0.99)
    assert (unmatched.mode, unmatched.rule_index, unmatched.reason) == ("approval", None, "no rule matched: approval")
    never = decide(rules, action(name="db-kubectl"), {"env": "prod"}, Severity.CRITICAL, 1.0)
    assert (never.mode, never.rule_name) == ("never", "never-prod-kubectl")


def test_dry_run_is_on_unless_the_action_targets_toyprod(shipped: Catalogue) -> None:
    labels = {"namespace": "demo"}
    assert decide(Policy(), action(), labels, Severity.CRITICAL, 1.0).dry_run is True
    assert decide(Policy(), shipped.get("toyprod-restart"), labels, Severity.CRITICAL, 1.0).dry_run is False
    assert decide(Policy(dry_run=True), shipped.get("toyprod-restart"), labels, Severity.CRITICAL, 1.0).dry_run
    shipped_policy = load_configured_policy(Settings(), shipped)
    decision = decide(shipped_policy, shipped.get("toyprod-restart"), labels, Severity.WARNING, 0.9)
    assert (decision.mode, decision.rule_name) == ("auto", "toyprod-safe-fixes-auto")
    vigil = decide(shipped_policy, shipped.get("toyprod-restart"), {"namespace": "vigil"}, Severity.CRITICAL, 1.0)
    assert vigil.mode == "never"


def test_invalid_policy_names_file_and_field(tmp_path: Path, shipped: Catalogue) -> None:
    path = write(
        tmp_path,
        "policy.yml",
        """\
        dry_run: sometimes
        rules:
          - actions: [toyprod-restart]
            mode: auto
          - actions: [no-such-action]
            mode: approval
          - mode: maybe
        """,
    )
    with pytest.raises(RemediationConfigError) as caught:
        load_policy(path, shipped)
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{path}: dry_run") for p in problems), problems
    assert f"{path}: rules[0]: an auto rule needs min_confidence" in problems
    assert any(p.startswith(f"{path}: rules[2].mode:") for p in problems)
    unknown = write(tmp_path, "unknown.yml", "rules:\n  - actions: [no-such-action]\n    mode: never\n")
    with pytest.raises(RemediationConfigError, match=r"rules\[0\].actions\[0\]: unknown action 'no-such-action'"):
        load_policy(unknown, shipped)


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
def test_cli_list_and_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["actions", "list"])
    assert listed.exit_code == 0, listed.output
    assert "toyprod-grow-db-pool" in listed.output
    assert "toyprod-cert-renew" in listed.output
    valid = runner.invoke(app, ["actions", "validate"])
    assert valid.exit_code == 0
    assert "6 action(s) valid; policy" in valid.output
    good = write(tmp_path, "good.yml", VALID.format(name="good"))
    assert runner.invoke(app, ["actions", "validate", str(good)]).output.strip() == "1 action(s) valid"
    bad = write(tmp_path, "bad.yml", VALID.format(name="bad").replace("idempotent: true", "rollback: gone"))
    result = runner.invoke(app, ["actions", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: idempotent: Field required" in result.output
    assert f"{bad}: rollback: unknown action 'gone'" not in result.output  # an invalid action is not cross-checked
    assert "1 problem(s)" in result.output
