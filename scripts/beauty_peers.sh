#!/usr/bin/env bash
# Our SASRec and the cornac library's SASRec on Amazon Beauty as one DVC experiment
# (download -> baselines -> peers; needs pip install -e '.[peers]'), run in a temporary copy
# (dvc exp run --temp) and recorded under results/$NAME/ from the experiment's commit:
# params.yaml, metrics of download, baselines and peers, and this command.
# The SASRec settings come from scripts/beauty_sasrec.sh, so after scripts/beauty.sh (or an
# earlier run of this script) DVC's run-cache restores our SASRec and only the peers train.
# Extra arguments are passed on, e.g. -S 'peers.run=[sasrec,gru4rec]'.
# Run from the activated environment (source .venv/bin/activate).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME="${NAME:-beauty-peers}"
source scripts/beauty_sasrec.sh  # the SASRec overrides (array sasrec)
beauty=$(realpath ../shared/data/amazon/beauty)  # absolute: the experiment runs elsewhere
dvc exp run --temp -n "$NAME" peers \
  -S download.source=benchmark -S download.local_dir="$beauty" "${sasrec[@]}" \
  -S 'peers.run=[sasrec]' "$@"
bash scripts/record_experiment.sh "$NAME" "NAME=$NAME bash scripts/beauty_peers.sh $*"
python scripts/render_results.py
