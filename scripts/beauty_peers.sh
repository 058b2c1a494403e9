#!/usr/bin/env bash
# Our SASRec and the cornac library's SASRec on Amazon Beauty as one DVC experiment
# (download -> baselines -> peers; needs pip install -e '.[peers]'), run in a temporary copy
# (dvc exp run --temp) and recorded under results/$NAME/ from the experiment's commit:
# params.yaml, the metrics of download, baselines and peers, SASRec's validation curve, the
# baselines' per-user test ranks (metrics/ranks.json, for paired comparisons) and this command.
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
# Only download, baselines and peers ran: the other metrics at the experiment's commit are the
# workspace's, not this run's. The baselines' ranks come from the experiment's own outputs.
out="results/$NAME/metrics"
rm -f "$out"/{mine,label,embed,rqvae,sft,grpo,eval,ranks}.json "$out/curves/sft_validation.json"
ref=$(git for-each-ref --sort=-committerdate --format='%(refname)' refs/exps | grep "/$NAME\$" | head -1)
python - "$ref" "$out/ranks.json" <<'PY'
import io, sys
import dvc.api, numpy as np
from deepinterestgr.common.artifacts import declared_files
from deepinterestgr.common.io import write_ranks
ref, path = sys.argv[1], sys.argv[2]
baselines = declared_files("baselines").baselines  # where dvc.yaml keeps them
def ranks(name):
    with dvc.api.open(str(baselines.test_ranks(name)), rev=ref, mode="rb") as handle:
        return np.load(io.BytesIO(handle.read()), allow_pickle=False)
write_ranks(path, "test", {name: ranks(name) for name in ("popularity", "sasrec")})
PY
python scripts/render_results.py
