#!/usr/bin/env bash
# Refresh requirements.lock: every dependency of the package and its dev extra, pinned with
# hashes, resolved by pip-tools against the same indexes scripts/setup.sh installs from (PyPI,
# plus this machine's pip configuration, which supplies the CPU build of torch). Run after a
# change to pyproject.toml's dependencies; commit the lock with it. Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/python" -m pip install --quiet pip-tools
"$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --extra dev --output-file requirements.lock pyproject.toml
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) pinned packages)"
