#!/usr/bin/env bash
# Set everything up and run the whole stack on its embedded defaults. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/vigil up "$@"
