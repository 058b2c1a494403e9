#!/usr/bin/env bash
# The full pipeline on Amazon Beauty (../shared/data/amazon/beauty) as one DVC experiment:
# the LLM-mined interests shipped with the data (precomputed; add LLM backends with API keys),
# the paper's 3 x 256 Semantic IDs, SASRec at Beauty scale trained to convergence, the
# item-level generative recommender (50 history items, up to 30 epochs within 60 minutes,
# checkpoint by sampled validation NDCG@10) and GRPO over every user once (at most 20 minutes),
# sized for one core of a 2-core CPU. On a GPU raise the model, e.g.
# -S sft.item_model.hidden_size=256 -S sft.item_model.intermediate_size=1024.
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
  -S sft.max_history=50 -S sft.selection.users=2000 -S sft.selection.patience=6
  -S sft.max_minutes=60
  -S sft.trainer.num_train_epochs=30 -S sft.trainer.per_device_train_batch_size=128
  -S sft.trainer.learning_rate=0.002 -S sft.trainer.weight_decay=0.0
  -S sft.trainer.warmup_steps=0.02
  -S grpo.max_prompts=0 -S grpo.trainer.num_train_epochs=1 -S grpo.max_minutes=20
  -S evaluate.batch_size=256
)
if [[ "${QUEUE:-0}" == 1 ]]; then
  exec dvc exp run --queue -n "$NAME" "${overrides[@]}" "$@"
fi
dvc exp run -n "$NAME" "${overrides[@]}" "$@"
bash scripts/record_experiment.sh "$NAME" "NAME=$NAME bash scripts/beauty.sh $*"
python scripts/render_results.py
