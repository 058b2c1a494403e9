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
ref=$(git for-each-ref --sort=-committerdate --format='%(refname)' refs/exps | grep "/$NAME\$" | head -1)
mkdir -p "results/$NAME/metrics"
git show "$ref:params.yaml" > "results/$NAME/params.yaml"
for stage in download baselines peers; do
  git show "$ref:metrics/$stage.json" > "results/$NAME/metrics/$stage.json"
done
printf 'NAME=%s bash scripts/beauty_peers.sh %s\n' "$NAME" "$*" > "results/$NAME/commands.sh"
python scripts/render_results.py
