#!/usr/bin/env bash
# The full pipeline on Amazon Beauty (../shared/data/amazon/beauty) as one DVC experiment:
# the LLM-mined interests shipped with the data (precomputed; add LLM backends with API keys),
# the paper's 3 x 256 Semantic IDs, SASRec at Beauty scale, and time budgets for sft and grpo.
# Extra arguments are passed on, e.g. -S sft.max_minutes=120 or -S 'mine.backends=[offline]'.
# Run from the activated environment (source .venv/bin/activate).
set -euo pipefail
cd "$(dirname "$0")/.."
dvc exp run -n "${NAME:-beauty}" \
  -S download.source=benchmark -S download.local_dir=../shared/data/amazon/beauty \
  -S 'mine.backends=[precomputed]' \
  -S rqvae.codebook_size=256 \
  -S baselines.sasrec.hidden_size=64 -S baselines.sasrec.num_heads=2 \
  -S baselines.sasrec.feedforward_size=256 -S baselines.sasrec.dropout=0.5 \
  -S baselines.sasrec.max_len=50 -S baselines.sasrec.batch_size=256 \
  -S baselines.sasrec.learning_rate=0.001 -S baselines.sasrec.max_epochs=50 \
  -S baselines.sasrec.patience=5 \
  -S sft.max_minutes=120 -S sft.trainer.num_train_epochs=40 -S sft.model_config.hidden_size=128 \
  -S grpo.max_prompts=4000 -S grpo.max_minutes=60 \
  -S evaluate.batch_size=128 \
  "$@"
mkdir -p "results/${NAME:-beauty}/metrics"
cp params.yaml "results/${NAME:-beauty}/"
cp metrics/*.json "results/${NAME:-beauty}/metrics/"
printf 'bash scripts/beauty.sh %s\n' "$*" > "results/${NAME:-beauty}/commands.sh"
python scripts/render_results.py
