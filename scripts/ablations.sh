#!/usr/bin/env bash
# Queue the paper's ablation table as DVC experiments, run them, and render the table into
# the README (between the ablations markers). Extra arguments are passed to every experiment,
# e.g. the Beauty settings:  bash scripts/ablations.sh -S download.source=benchmark ...
# Run from the activated environment (source .venv/bin/activate): stages call `python`.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=("$@")
queue() { dvc exp run --queue --force -n "$1" "${@:2}" "${extra[@]}"; }

queue full
queue no-interests    -S embed.use_interests=false               # shallow text in the SIDs
queue no-labelling    -S label.threshold=0.0                     # every mined interest kept
queue reward-exact    -S grpo.weights.prefix=0.0 -S grpo.weights.quality=0.0 -S grpo.weights.valid=0.0
queue reward-no-quality -S grpo.weights.quality=0.0              # prefix credit, no q_target bonus
# "without GRPO" is the sft row of every experiment (evaluate reports SFT beside GRPO).

dvc queue start --jobs "${JOBS:-1}"
# Wait for the queue to drain, then show what failed (if anything).
while dvc queue status | grep -E 'Queued|Running' > /dev/null; do sleep 10; done  # grep -q would end the pipe early (SIGPIPE under pipefail)
dvc queue status
python scripts/render_results.py --ablations
dvc exp show --md --only-changed
