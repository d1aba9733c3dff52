"""What `vigil actions ...` prints (the commands themselves are in `vigil/cli.py`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vigil.remediation.actions import Action, PromqlVerification
from vigil.remediation.catalogue import Catalogue, configured_action_paths, load_catalogue
from vigil.remediation.errors import RemediationConfigError
from vigil.remediation.policy import configured_policy_path, load_policy
from vigil.settings import Settings


def verification_text(action: Action) -> str:
    verification = action.verification
    if isinstance(verification, PromqlVerification):
        query = " ".join(verification.promql.split())
        return f"{query} {verification.condition} for {verification.for_seconds:g}s"
    return f"alerts resolved within {verification.within_seconds:g}s"


def actions_table(catalogue: Catalogue) -> Table:
    table = Table(
        "name", "executor", "idempotent", "rollback", "verification", title=f"{len(catalogue.actions)} action(s)"
    )
    for name, action in sorted(catalogue.actions.items()):
        idempotent = "yes" if action.idempotent else "no"
        table.add_row(name, action.executor.type, idempotent, action.rollback or "-", verification_text(action))
    return table


def validate(paths: list[Path] | None, policy: Path | None, settings: Settings) -> int:
    """0 and the counts when the actions (and the policy) are valid, else 1 with every problem on stderr.
    With explicit `paths` the policy is checked only when `--policy` names one."""
    problems = []
    catalogue: Catalogue | None = None
    try:
        catalogue = load_catalogue(paths or configured_action_paths(settings), settings)
    except RemediationConfigError as exc:
        problems.extend(exc.problems)
    policy_path = policy or (None if paths else configured_policy_path(settings))
    rules: int | None = None
    if policy_path is not None:
        try:
            rules = len(load_policy(policy_path, catalogue).rules)
        except RemediationConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        for problem in problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{len(problems)} problem(s)", err=True)
        return 1
    assert catalogue is not None
    summary = f"{len(catalogue.actions)} action(s) valid"
    typer.echo(summary if rules is None else f"{summary}; policy {policy_path}: {rules} rule(s) valid")
    return 0
