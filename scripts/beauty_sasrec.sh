# SASRec at Amazon Beauty scale, sourced by scripts/beauty.sh and scripts/beauty_peers.sh:
# full softmax cross-entropy, early stopping on validation NDCG@10 (patience 8 epochs), about
# 40 s per epoch with validation on one core.
# shellcheck disable=SC2034  # used by the scripts that source this file
sasrec=(
  -S baselines.sasrec.hidden_size=64 -S baselines.sasrec.num_heads=2
  -S baselines.sasrec.feedforward_size=256 -S baselines.sasrec.dropout=0.5
  -S baselines.sasrec.max_len=50 -S baselines.sasrec.batch_size=128
  -S baselines.sasrec.learning_rate=0.002 -S baselines.sasrec.max_epochs=45
  -S baselines.sasrec.patience=8
)
