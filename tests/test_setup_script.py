"""`scripts/setup.sh` in a copy of the repository whose `.venv/bin/python` only records how it was called."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDING_PYTHON = '#!/bin/sh\necho "$@" >>"$(dirname "$0")/calls"\n'


def setup_sandbox(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO_ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDING_PYTHON)
    python.chmod(0o755)
    return tmp_path


def run_setup(repo: Path, *extras: str) -> str:
    env = {**os.environ, "PYTHON": sys.executable, "VIGIL_SKIP_APT": "1"}
    result = subprocess.run(
        ["bash", str(repo / "scripts" / "setup.sh"), *extras],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def installs(repo: Path) -> list[str]:
    calls = (repo / ".venv" / "bin" / "calls").read_text().splitlines()
    return [call.rpartition(" -e ")[2] for call in calls if " -e " in call]


def test_an_install_with_more_extras_is_up_to_date(tmp_path: Path) -> None:
    repo = setup_sandbox(tmp_path)
    assert "installing Vigil (.[dev])" in run_setup(repo, "dev")  # scripts/test.sh
    assert "installing" not in run_setup(repo)  # then scripts/up.sh
    assert "installing" not in run_setup(repo, "dev")
    assert installs(repo) == [".[dev]"]

    assert "installing Vigil (.[dev,gpu])" in run_setup(repo, "gpu")  # a new extra keeps the ones installed
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# changed\n")
    assert "installing Vigil (.[dev,gpu])" in run_setup(repo)
    assert installs(repo) == [".[dev]", ".[dev,gpu]", ".[dev,gpu]"]
