# Amazon Beauty (benchmark folder): download -> baselines (our SASRec) -> peers (cornac's SASRec)
# as one DVC experiment on the shared 2-core CPU, one torch thread. baselines was restored from
# the run-cache of the identical experiment beauty-sasrec (same code and params, run just
# before); peers trained cornac's SASRec in this experiment. params.yaml here is exact.
source .venv/bin/activate
pip install -e '.[peers]'
dvc exp run --temp -n beauty-sasrec baselines -S download.source=benchmark \
  -S download.local_dir=/work/shared/data/amazon/beauty \
  -S baselines.sasrec.hidden_size=64 -S baselines.sasrec.num_heads=2 \
  -S baselines.sasrec.feedforward_size=256 -S baselines.sasrec.dropout=0.5 \
  -S baselines.sasrec.max_len=50 -S baselines.sasrec.batch_size=128 \
  -S baselines.sasrec.learning_rate=0.002 -S baselines.sasrec.max_epochs=45 \
  -S baselines.sasrec.patience=8
NAME=beauty-peers bash scripts/beauty_peers.sh   # adds -S 'peers.run=[sasrec]', target peers
