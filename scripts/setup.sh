#!/usr/bin/env bash
# Set up Vigil on a fresh Debian machine with Python >= 3.11: a virtualenv in .venv with Vigil and the given
# extras (e.g. `scripts/setup.sh dev`), and Prometheus + Alertmanager from Debian "where it can" (root or sudo;
# VIGIL_SKIP_APT=1 skips apt; without them `vigil up` runs with monitoring off and says why). Idempotent and
# quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"

apt_install() {
    # Debian packages the project needs; root or sudo required.
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -n "${VIGIL_SKIP_APT:-}" ]; then
        echo "error: need Debian packages ($*) but VIGIL_SKIP_APT is set; install them by hand" >&2
        exit 1
    fi
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

have_monitoring() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 &&
        command -v amtool >/dev/null 2>&1 &&
        { command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1; }
}

install_monitoring() {
    # Debian packages `prometheus` (prometheus, promtool) and `prometheus-alertmanager` (+ amtool).
    have_monitoring && return 0
    local why=""
    if [ -n "${VIGIL_SKIP_APT:-}" ]; then
        why="VIGIL_SKIP_APT is set"
    elif ! command -v apt-get >/dev/null 2>&1; then
        why="apt-get is not available"
    elif [ "$(id -u)" -ne 0 ] && ! sudo -n true >/dev/null 2>&1; then
        why="neither root nor passwordless sudo"
    fi
    if [ -n "$why" ]; then
        echo "note: not installing prometheus and prometheus-alertmanager ($why); vigil up runs without" \
            "monitoring and the infra tests fail until they are installed" >&2
        return 0
    fi
    echo "installing prometheus and prometheus-alertmanager (Debian) ..."
    apt_install --no-install-recommends prometheus prometheus-alertmanager
    # The packages enable system services on :9090 and :9093 (started where systemd runs; a container
    # without systemd starts nothing). `vigil up` runs its own instances, so stop and disable those.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        for service in prometheus prometheus-alertmanager; do
            if systemctl is-enabled --quiet "$service" 2>/dev/null || systemctl is-active --quiet "$service"; then
                echo "stopping and disabling the packaged $service service (vigil up runs its own)"
                $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
            fi
        done
    fi
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

have_browser() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}

install_browser() {
    # Debian `chromium` and `chromium-driver`: the console's browser tests drive a real headless Chromium.
    have_browser && return 0
    if [ -n "${VIGIL_SKIP_APT:-}" ] || ! command -v apt-get >/dev/null 2>&1 ||
        { [ "$(id -u)" -ne 0 ] && ! sudo -n true >/dev/null 2>&1; }; then
        echo "note: not installing chromium and chromium-driver (no apt, root or sudo); the console's browser" \
            "tests fail until they are installed" >&2
        return 0
    fi
    echo "installing chromium and chromium-driver (Debian) ..."
    apt_install --no-install-recommends chromium chromium-driver
}

normalise_extras() {
    # "dev, x,dev" -> "dev,x": sorted, unique, comma-separated
    printf '%s\n' ${1//,/ } | sed '/^$/d' | sort -u | paste -sd, -
}

# The stamp holds pyproject.toml's hash and the extras installed. An install with every requested extra is up
# to date: `scripts/up.sh` (no extras) after `scripts/test.sh` (dev) must not reinstall. A new install keeps
# the extras already there.
stamp=".venv/.vigil-installed"
hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have_hash=""
have_extras=""
if [ -f "$stamp" ]; then
    read -r have_hash have_extras <"$stamp" || true
fi
have_extras="$(normalise_extras "$have_extras")"
all_extras="$(normalise_extras "${have_extras},${extras}")"
if [ "$have_hash" != "$hash" ] || [ "$all_extras" != "$have_extras" ]; then
    spec="."
    [ -n "$all_extras" ] && spec=".[${all_extras}]"
    echo "installing Vigil (${spec}) into .venv ..."
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    # A flat-layout editable install always "informs" that same-named folders may shadow the package.
    PYTHONWARNINGS="ignore:Editable installation" \
        .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
    echo "$hash $all_extras" >"$stamp"
fi

install_monitoring
case ",${all_extras}," in *,dev,*) install_browser ;; esac
