# Amazon Beauty (benchmark folder), download + baselines, on a shared 2-core CPU (2,162 s SASRec).
# params.yaml in this folder is the exact configuration; equivalently:
source .venv/bin/activate
dvc exp run baselines -S download.source=benchmark \
  -S download.local_dir=../shared/data/amazon/beauty \
  -S baselines.sasrec.hidden_size=64 -S baselines.sasrec.num_heads=2 \
  -S baselines.sasrec.feedforward_size=256 -S baselines.sasrec.dropout=0.3 \
  -S baselines.sasrec.max_len=50 -S baselines.sasrec.batch_size=256 \
  -S baselines.sasrec.learning_rate=0.002 -S baselines.sasrec.max_epochs=12
