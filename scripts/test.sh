#!/usr/bin/env bash
# Set everything up and run the whole test suite: lint, format check, type check, then pytest on real
# Temporal and PostgreSQL. Extra arguments go to pytest (e.g. `scripts/test.sh -k approval`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/setup-vllm.sh
# shellcheck disable=SC1091
. .venv/bin/activate

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
