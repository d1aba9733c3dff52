"""The remediation policy: ordered rules that say whether an action runs on its own, waits for a human, or never
runs; and whether it only pretends (dry run).

The first rule whose action glob, environment/namespace globs and minimum severity all match decides. An `auto`
rule allows the action only at or above its `min_confidence`; below it the action waits for approval. When no
rule matches, a human approves."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vigil.knowledge.base import SHIPPED_RUNBOOKS
from vigil.models import Severity
from vigil.remediation.actions import Action
from vigil.remediation.catalogue import Catalogue
from vigil.remediation.errors import Problem, RemediationConfigError
from vigil.remediation.loading import read_yaml, validation_problems
from vigil.settings import Settings

SHIPPED_POLICY = SHIPPED_RUNBOOKS / "policy.yml"
ENVIRONMENT_LABELS = ("environment", "env")
GLOB_CHARACTERS = frozenset("*?[")

Mode = Literal["auto", "approval", "never"]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1)
    actions: list[str] = Field(default=["*"], min_length=1, description="Globs over action names.")
    environments: list[str] | None = Field(
        default=None, min_length=1, description="Globs over the `environment` (or `env`) label; absent: no match."
    )
    namespaces: list[str] | None = Field(
        default=None, min_length=1, description="Globs over the `namespace` label; absent: no match."
    )
    min_severity: Severity | None = None
    mode: Mode
    min_confidence: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _confidence_with_auto(self) -> Rule:
        if self.mode == "auto" and self.min_confidence is None:
            raise ValueError("an auto rule needs min_confidence")
        if self.mode != "auto" and self.min_confidence is not None:
            raise ValueError(f"min_confidence applies to auto rules only, not to {self.mode}")
        return self

    def matches(self, action: str, labels: Mapping[str, str], severity: Severity) -> bool:
        environment = next((labels[key] for key in ENVIRONMENT_LABELS if labels.get(key)), None)
        return (
            _any_glob(self.actions, action)
            and (self.environments is None or _any_glob(self.environments, environment))
            and (self.namespaces is None or _any_glob(self.namespaces, labels.get("namespace")))
            and (self.min_severity is None or severity.rank <= self.min_severity.rank)
        )


def _any_glob(globs: list[str], value: str | None) -> bool:
    return value is not None and any(fnmatchcase(value, glob) for glob in globs)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: bool | Literal["auto"] = Field(
        default="auto", description="true: every action; false: none; auto: every action not aimed at toyprod."
    )
    rules: list[Rule] = Field(default_factory=list)


class PolicyDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    mode: Mode
    rule_index: int | None
    """Index of the deciding rule in `rules`; None: no rule matched."""
    rule_name: str | None
    reason: str
    dry_run: bool


def decide(
    policy: Policy, action: Action, labels: Mapping[str, str], severity: Severity, confidence: float
) -> PolicyDecision:
    """Pure: the same inputs always give the same decision."""
    dry_run = not action.targets_toyprod if policy.dry_run == "auto" else policy.dry_run
    for index, rule in enumerate(policy.rules):
        if not rule.matches(action.name, labels, severity):
            continue
        name = rule.name or f"rules[{index}]"
        if rule.mode == "auto":
            assert rule.min_confidence is not None  # validated
            if confidence < rule.min_confidence:
                reason = f"rule {name} allows auto at confidence >= {rule.min_confidence:g}, got {confidence:g}"
                return PolicyDecision(mode="approval", rule_index=index, rule_name=name, reason=reason, dry_run=dry_run)
            reason = f"rule {name} allows auto at confidence {confidence:g} >= {rule.min_confidence:g}"
        else:
            reason = f"rule {name} requires {'approval' if rule.mode == 'approval' else 'that it never runs'}"
        return PolicyDecision(mode=rule.mode, rule_index=index, rule_name=name, reason=reason, dry_run=dry_run)
    return PolicyDecision(
        mode="approval", rule_index=None, rule_name=None, reason="no rule matched: approval", dry_run=dry_run
    )


def load_policy(path: Path, catalogue: Catalogue | None = None) -> Policy:
    """The policy in `path`; with a catalogue, action names without glob characters must exist in it.
    `RemediationConfigError` lists all problems."""
    document, problems = read_yaml(path)
    if not problems:
        try:
            policy = Policy.model_validate({} if document is None else document)
        except ValidationError as exc:
            raise RemediationConfigError(validation_problems(str(path), "", exc)) from None
        for index, rule in enumerate(policy.rules):
            for position, glob in enumerate(rule.actions):
                literal = not GLOB_CHARACTERS & set(glob)
                if catalogue is not None and literal and glob not in catalogue.actions:
                    problems.append(
                        Problem(str(path), f"rules[{index}].actions[{position}]", f"unknown action {glob!r}")
                    )
    if problems:
        raise RemediationConfigError(problems)
    return policy


def configured_policy_path(settings: Settings) -> Path | None:
    """The policy file: VIGIL_REMEDIATION_POLICY, else the shipped one while the shipped actions it names are
    loaded; None: no file, every action waits for approval (`Policy()`)."""
    if settings.remediation_policy_path is not None:
        return settings.remediation_policy_path
    return SHIPPED_POLICY if settings.shipped_actions else None


def load_configured_policy(settings: Settings, catalogue: Catalogue | None = None) -> Policy:
    path = configured_policy_path(settings)
    return Policy() if path is None else load_policy(path, catalogue)
