#!/usr/bin/env bash
# Write a Markdown report comparing this workspace's params and metrics with a base revision:
#   bash scripts/metrics_report.sh BASE_REV [OUT_FILE]
# Used by .ci/run (printed) and by the pull-request workflow (posted as a comment).
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:?usage: metrics_report.sh BASE_REV [OUT_FILE]}"
out="${2:-/dev/stdout}"
dvc="${DVC:-.venv/bin/dvc}"
{
  echo "## DeepInterestGR: metrics against \`$base\`"
  echo
  echo "### Metrics"
  "$dvc" metrics diff "$base" --md --precision 4 || echo "(no metrics to compare)"
  echo
  echo "### Params"
  "$dvc" params diff "$base" --md || echo "(no params to compare)"
} > "$out"
