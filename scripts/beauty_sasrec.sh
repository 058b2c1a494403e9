# SASRec at Amazon Beauty scale, sourced by scripts/beauty.sh and scripts/beauty_peers.sh:
# full softmax cross-entropy, early stopping on validation NDCG@10 (patience 8 epochs). What
# makes it converge to test HR@10 .0848 / NDCG@10 .0501 (results/beauty-peers) where the
# previous recipe stopped at .0636 / .0348 after 45 epochs: item embeddings scaled by
# sqrt(hidden), positions counted from the newest item, a 64-wide ReLU feed-forward and Adam's
# beta2 0.98 (Kang & McAuley's choices); about 28 s CPU per epoch with validation on one core.
# shellcheck disable=SC2034  # used by the scripts that source this file
sasrec=(
  -S baselines.sasrec.hidden_size=64 -S baselines.sasrec.num_heads=2
  -S baselines.sasrec.feedforward_size=64 -S baselines.sasrec.activation=relu
  -S baselines.sasrec.scale_embeddings=true -S baselines.sasrec.positions=from_newest
  -S baselines.sasrec.dropout=0.5 -S baselines.sasrec.max_len=50
  -S baselines.sasrec.batch_size=128 -S baselines.sasrec.learning_rate=0.002
  -S baselines.sasrec.adam_beta2=0.98 -S baselines.sasrec.max_epochs=60
  -S baselines.sasrec.patience=8
)
