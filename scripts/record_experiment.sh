#!/usr/bin/env bash
# Record a finished DVC experiment under results/NAME/ from the experiment's own commit (so a
# queued experiment, run in a temporary copy, is recorded as well as one run in the workspace):
# its params.yaml, every git-tracked metrics file (metrics/*.json, the per-user test ranks
# metrics/ranks.json, the validation curves metrics/curves/*.json) and the command that made it.
#   bash scripts/record_experiment.sh NAME 'the command, e.g. NAME=beauty bash scripts/beauty.sh'
# Then add a one-line results/NAME/note.txt (machine, what differs), commit results/NAME/ and
# run python scripts/render_results.py.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: record_experiment.sh NAME COMMAND}"
command="${2:?usage: record_experiment.sh NAME COMMAND}"
ref=$(git for-each-ref --sort=-committerdate --format='%(refname)' refs/exps | grep "/$name\$" | head -1)
if [[ -z "$ref" ]]; then
  echo "record_experiment.sh: no DVC experiment named $name (see dvc exp show)" >&2
  exit 1
fi
out="results/$name"
rm -rf "$out/metrics"  # a note.txt written by hand stays
mkdir -p "$out/metrics"
git show "$ref:params.yaml" > "$out/params.yaml"
git ls-tree -r --name-only "$ref" metrics | while read -r path; do
  mkdir -p "$out/$(dirname "$path")"
  git show "$ref:$path" > "$out/$path"
done
printf '%s\n' "$command" > "$out/commands.sh"
echo "recorded $name ($ref) in $out"
