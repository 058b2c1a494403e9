#!/usr/bin/env bash
# The full pipeline on Amazon Beauty (../shared/data/amazon/beauty) as one DVC experiment:
# the LLM-mined interests shipped with the data (precomputed; add LLM backends with API keys),
# the paper's 3 x 256 Semantic IDs, SASRec at Beauty scale, and sft/grpo sized for a 2-core CPU
# (about an hour of sft and a quarter of an hour of grpo on one busy core). On a GPU raise
# sft.trainer.num_train_epochs and the model size, e.g. -S sft.model_config.hidden_size=256.
# Extra arguments are passed on, e.g. -S sft.trainer.num_train_epochs=20 or -S 'mine.backends=[offline]'.
# Run from the activated environment (source .venv/bin/activate); results go to results/$NAME.
# QUEUE=1 only queues the experiment (dvc exp run --queue) and records nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME="${NAME:-beauty}"
source scripts/beauty_sasrec.sh  # the SASRec overrides (array sasrec)
overrides=(
  -S download.source=benchmark -S download.local_dir=../shared/data/amazon/beauty
  -S 'mine.backends=[precomputed]'
  -S rqvae.codebook_size=256
  "${sasrec[@]}"
  -S sft.model_config.hidden_size=128 -S sft.model_config.num_attention_heads=4
  -S sft.model_config.num_key_value_heads=4 -S sft.model_config.intermediate_size=512
  -S sft.task_weights.interests_to_sid=0.5 -S sft.task_weights.sid_to_interests=0.25
  -S sft.valid_users=2000 -S sft.max_minutes=75
  -S sft.trainer.num_train_epochs=6 -S sft.trainer.per_device_train_batch_size=256
  -S sft.trainer.learning_rate=0.005 -S sft.trainer.warmup_steps=0.02
  -S grpo.max_prompts=800 -S grpo.epochs=1 -S grpo.max_minutes=15
  -S evaluate.batch_size=128
)
if [[ "${QUEUE:-0}" == 1 ]]; then
  exec dvc exp run --queue -n "$NAME" "${overrides[@]}" "$@"
fi
dvc exp run -n "$NAME" "${overrides[@]}" "$@"
mkdir -p "results/$NAME/metrics"
cp params.yaml "results/$NAME/"
cp metrics/*.json "results/$NAME/metrics/"
printf 'NAME=%s bash scripts/beauty.sh %s\n' "$NAME" "$*" > "results/$NAME/commands.sh"
python scripts/render_results.py
