#!/usr/bin/env bash
# GRPO reward ablation on Amazon Beauty, queued with dvc exp run --queue: the full
# Interest-Aware Reward against the exact hit alone, both from the same SFT model. Run it after
# scripts/beauty.sh: DVC's run-cache restores every stage up to sft, so the queue trains and
# evaluates only grpo (the full-reward experiment repeats scripts/beauty.sh's params and costs
# nothing). Queued experiments run in a temporary copy, so the data paths are absolute.
# Run from the activated environment (source .venv/bin/activate).
set -euo pipefail
cd "$(dirname "$0")/.."
beauty=$(realpath ../shared/data/amazon/beauty)
paths=(-S download.local_dir="$beauty" -S mine.precomputed.path="$beauty/interests.jsonl")
# Exact-only first: the full-reward grpo may still be in training under scripts/beauty.sh.
QUEUE=1 NAME=beauty-reward-exact bash scripts/beauty.sh "${paths[@]}" \
  -S grpo.weights.prefix=0.0 -S grpo.weights.quality=0.0 -S grpo.weights.valid=0.0
QUEUE=1 NAME=beauty-reward-full bash scripts/beauty.sh "${paths[@]}"
dvc queue start --jobs 1
while dvc queue status | grep -E 'Queued|Running' > /dev/null; do sleep 10; done  # grep -q would end the pipe early (SIGPIPE under pipefail)
dvc queue status
for name in beauty-reward-exact beauty-reward-full; do
  bash scripts/record_experiment.sh "$name" "bash scripts/beauty_reward_ablation.sh"
done
