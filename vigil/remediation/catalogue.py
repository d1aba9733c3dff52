"""The action catalogue: the shipped `runbooks/actions/*.yml` plus `VIGIL_ACTIONS_DIRS`, loaded all-or-nothing.

Loading checks the file shape (pydantic) and then what a schema cannot: placeholders and references in
templates, script paths inside the allowlisted directory, kubectl only when enabled, unique names and rollbacks
that exist. Every problem of every file is collected before anything is refused."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from vigil.knowledge.base import SHIPPED_RUNBOOKS
from vigil.remediation.actions import Action, KubectlExecutor, ScriptExecutor
from vigil.remediation.errors import Problem, RemediationConfigError
from vigil.remediation.loading import read_yaml, validation_problems
from vigil.remediation.templates import placeholders, reference_problems
from vigil.settings import Settings

SHIPPED_ACTIONS = SHIPPED_RUNBOOKS / "actions"
SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class Catalogue:
    actions: dict[str, Action]
    sources: dict[str, Path]
    """Which file defined each action."""

    def get(self, name: str) -> Action:
        try:
            return self.actions[name]
        except KeyError:
            raise KeyError(f"no action {name!r} in the catalogue") from None


def configured_action_paths(settings: Settings) -> list[Path]:
    """The shipped actions (unless `shipped_actions` is off), then `VIGIL_ACTIONS_DIRS`."""
    return [*([SHIPPED_ACTIONS] if settings.shipped_actions else []), *settings.actions_dirs]


def action_files(paths: Iterable[Path]) -> tuple[list[Path], list[Problem]]:
    """The .yml/.yaml files among `paths` and directly inside the folders among them, each once."""
    files: dict[Path, None] = {}
    problems = []
    for path in paths:
        if path.is_dir():
            files.update(dict.fromkeys(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())))
        elif path.is_file():
            files[path] = None
        else:
            problems.append(Problem(str(path), "", "no such file or folder"))
    return list(files), problems


def load_catalogue(paths: Sequence[Path], settings: Settings) -> Catalogue:
    """Every action in the files and folders `paths`; `RemediationConfigError` lists all problems."""
    files, problems = action_files(paths)
    actions: dict[str, Action] = {}
    sources: dict[str, Path] = {}
    prefixes: dict[str, str] = {}
    for path in files:
        for location, action in _parse_file(path, problems):
            problems.extend(Problem(str(path), f"{location}{p.location}", p.message) for p in check(action, settings))
            if action.name in actions:
                where = f"{location}name"
                problems.append(
                    Problem(str(path), where, f"duplicate name {action.name!r}, also in {sources[action.name]}")
                )
                continue
            actions[action.name] = action
            sources[action.name] = path
            prefixes[action.name] = location
    for name, action in actions.items():
        where = f"{prefixes[name]}rollback"
        if action.rollback is not None and action.rollback not in actions:
            problems.append(Problem(str(sources[name]), where, f"unknown action {action.rollback!r}"))
        elif action.rollback == name:
            problems.append(Problem(str(sources[name]), where, "an action cannot roll itself back"))
    if problems:
        raise RemediationConfigError(problems)
    return Catalogue(actions, sources)


def load_configured_catalogue(settings: Settings) -> Catalogue:
    return load_catalogue(configured_action_paths(settings), settings)


def _parse_file(path: Path, problems: list[Problem]) -> Iterator[tuple[str, Action]]:
    """(location prefix, action) for each valid action of a file; problems of invalid ones are appended."""
    document, read_problems = read_yaml(path)
    problems.extend(read_problems)
    if read_problems:
        return
    if isinstance(document, dict):
        entries: list[tuple[str, object]] = [("", document)]
    elif isinstance(document, list) and document:
        entries = [(f"[{index}]", entry) for index, entry in enumerate(document)]
    else:
        problems.append(Problem(str(path), "", "expected an action (a mapping) or a non-empty list of actions"))
        return
    for prefix, entry in entries:
        try:
            action = Action.model_validate(entry)
        except ValidationError as exc:
            problems.extend(validation_problems(str(path), prefix, exc))
            continue
        yield (f"{prefix}." if prefix else ""), action


def check(action: Action, settings: Settings) -> list[Problem]:
    """What the schema cannot see; locations are relative to the action."""
    problems: list[Problem] = []
    for location, template, secrets_allowed in action.templates():
        problems.extend(
            Problem("", location, why) for why in reference_problems(template, secrets_allowed=secrets_allowed)
        )
        for name in placeholders(template):
            parameter = action.parameters.get(name)
            if parameter is None:
                problems.append(Problem("", location, f"placeholder {{{name}}} is not a declared parameter"))
            elif not parameter.required and parameter.default is None:
                problems.append(
                    Problem("", location, f"placeholder {{{name}}} uses an optional parameter without a default")
                )
    executor = action.executor
    if isinstance(executor, KubectlExecutor) and not settings.kubectl_actions_enabled:
        problems.append(Problem("", "executor.type", "kubectl actions are disabled (VIGIL_KUBECTL_ACTIONS_ENABLED)"))
    if isinstance(executor, ScriptExecutor):
        problems.extend(Problem("", "executor.path", why) for why in _script_problems(executor.path, settings))
    return problems


def _script_problems(relative: str, settings: Settings) -> list[str]:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or "\\" in relative:
        return [f"{relative!r} must be a plain path relative to the scripts directory"]
    root = settings.remediation_scripts_dir
    if root is None:
        return ["script actions need an allowlisted scripts directory (VIGIL_REMEDIATION_SCRIPTS_DIR)"]
    resolved = (root / pure).resolve()
    if not resolved.is_relative_to(root.resolve()):
        return [f"{relative!r} leaves the scripts directory {root}"]
    if not resolved.is_file():
        return [f"no script {relative!r} in {root}"]
    return []
