#!/usr/bin/env bash
# Beauty SFT (and GRPO) on one GPU. Phase 1: for every prepared work folder given
# (bench/sft_beauty.py prepare + set), the sft stage under `accelerate launch` (bf16) and a
# test-split evaluation on the GPU, all folders at once on the same card (models this small
# leave most of it idle). Phase 2: the grpo stage and its test evaluation in every folder named
# in GRPO_WORKS (space-separated; each links to a phase-1 folder's data/sft), again all at once.
#   GRPO_WORKS="W1 W2" bash bench/beauty_sft_gpu.sh REPORT_DIR WORK [WORK ...]
# REPORT_DIR receives summary.json (sft, grpo and test metrics per folder, rewritten after each
# phase) and logs.tar.gz. A dry run without a GPU: DEVICE=cpu MIXED_PRECISION=no.
set -uo pipefail
report=$(realpath -m "$1"); shift
root=$(cd "$(dirname "$0")/.." && pwd)
read -r -a grpo_works <<< "${GRPO_WORKS:-}"
works=()
for work in "$@" "${grpo_works[@]}"; do works+=("$(realpath "$work")"); done
mkdir -p "$report/logs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
start=$(date +%s)

summarise() {
  python3 - "$report" "${works[@]}" <<'PY'
import json, sys
from pathlib import Path
report, works = Path(sys.argv[1]), [Path(w) for w in sys.argv[2:]]
summary = {}
for work in works:
    row = {}
    for name in ("sft", "grpo", "beauty_test_sft", "beauty_test_grpo"):
        path = work / "metrics" / f"{name}.json"
        if path.exists():
            row[name] = json.loads(path.read_text())
    summary[work.name] = row
(report / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for name, row in summary.items():
    for model in ("sft", "grpo"):
        test = row.get(f"beauty_test_{model}")
        if test:
            print(f"{name} {model}: HR@10 {test.get('hr@10')} NDCG@10 {test.get('ndcg@10')}")
PY
  for work in "${works[@]}"; do
    cp -r "$work/dvclive" "$report/logs/dvclive_$(basename "$work")" 2>/dev/null
  done
  tar -czf "$report/logs.tar.gz" -C "$report" logs
}

# stage_then_test NAME STAGE_COMMAND... : run one stage in the current folder, then the test.
stage_then_test() {
  local name=$1 model=$2; shift 2
  "$@" > "$report/logs/${model}_$name.log" 2>&1 &&
    python3 "$root/bench/sft_beauty.py" test --work "$PWD" --device "${DEVICE:-cuda}" \
      --model "data/$model/model" > "$report/logs/test_${model}_$name.log" 2>&1
  echo "$model $name finished with status $? after $(( $(date +%s) - start )) s"
}

for work in "$@"; do
  (cd "$(realpath "$work")" && stage_then_test "$(basename "$work")" sft \
    python3 -m accelerate.commands.launch --num_processes 1 --num_machines 1 \
    --mixed_precision "${MIXED_PRECISION:-bf16}" --dynamo_backend no "$root/stages/sft.py") &
done
wait
summarise
for work in "${grpo_works[@]}"; do
  (cd "$(realpath "$work")" && stage_then_test "$(basename "$work")" grpo \
    python3 "$root/stages/grpo.py") &
done
wait
summarise
rm -rf "$report/logs"
