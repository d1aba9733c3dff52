#!/usr/bin/env bash
# Set up Vigil on a fresh Debian machine with Python >= 3.11: a virtualenv in .venv with Vigil and the given
# extras (e.g. `scripts/setup.sh dev`). Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"

apt_install() {
    # Debian packages the project needs; root or sudo required.
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: need Debian packages ($*) but apt-get is not available; install them by hand" >&2
        exit 1
    fi
    if [ -z "${VIGIL_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        export VIGIL_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: Vigil needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        apt_install python3-venv
        "$python" -m venv .venv
    fi
fi

spec="."
[ -n "$extras" ] && spec=".[${extras}]"
stamp=".venv/.vigil-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) ${extras}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing Vigil (${spec}) into .venv ..."
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
    echo "$want" >"$stamp"
fi
