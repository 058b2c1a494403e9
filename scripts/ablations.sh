#!/usr/bin/env bash
# Queue the paper's ablations as DVC experiments, run them, and record each under
# results/<PREFIX><name>/ (scripts/record_experiment.sh), so the README's results table shows
# them once committed. Extra arguments are passed to every experiment, e.g. the Beauty settings:
#   PREFIX=beauty- bash scripts/ablations.sh -S download.source=benchmark ...
# Run from the activated environment (source .venv/bin/activate): stages call `python`.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=("$@")
prefix="${PREFIX:-default-}"
names=()
queue() {
  names+=("$prefix$1")
  dvc exp run --queue --force -n "$prefix$1" "${@:2}" "${extra[@]}"
}

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
for name in "${names[@]}"; do
  bash scripts/record_experiment.sh "$name" "PREFIX=$prefix bash scripts/ablations.sh ${extra[*]}"
done
echo "recorded ${names[*]}: add a note.txt to each, commit results/, run scripts/render_results.py"
