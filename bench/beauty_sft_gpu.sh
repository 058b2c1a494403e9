#!/usr/bin/env bash
# Beauty SFT on one GPU: for every prepared work folder (bench/sft_beauty.py prepare + set),
# the sft stage under `accelerate launch` (bf16) and a test-split evaluation on the GPU, all
# folders at once on the same card (models this small leave most of it idle).
#   bash bench/beauty_sft_gpu.sh REPORT_DIR WORK [WORK ...]
# (A dry run without a GPU: DEVICE=cpu MIXED_PRECISION=no bash bench/beauty_sft_gpu.sh ...)
# REPORT_DIR receives summary.json (sft and test metrics per folder) and logs.tar.gz.
set -uo pipefail
report=$(realpath -m "$1"); shift
root=$(cd "$(dirname "$0")/.." && pwd)
works=()
for work in "$@"; do works+=("$(realpath "$work")"); done
set -- "${works[@]}"
mkdir -p "$report/logs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
start=$(date +%s)
for work in "$@"; do
  name=$(basename "$work")
  (
    cd "$work" &&
      python3 -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision "${MIXED_PRECISION:-bf16}" \
        --dynamo_backend no "$root/stages/sft.py" > "$report/logs/sft_$name.log" 2>&1 &&
      python3 "$root/bench/sft_beauty.py" test --work "$work" --device "${DEVICE:-cuda}" \
        > "$report/logs/test_$name.log" 2>&1
    echo "$name finished with status $? after $(( $(date +%s) - start )) s"
  ) &
done
wait
python3 - "$report" "$@" <<'PY'
import json, sys
from pathlib import Path
report, works = Path(sys.argv[1]), [Path(w) for w in sys.argv[2:]]
summary = {}
for work in works:
    row = {}
    for name in ("sft", "beauty_test"):
        path = work / "metrics" / f"{name}.json"
        row[name] = json.loads(path.read_text()) if path.exists() else None
    summary[work.name] = row
(report / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for name, row in summary.items():
    test = row["beauty_test"] or {}
    print(name, "HR@10", test.get("hr@10"), "NDCG@10", test.get("ndcg@10"),
          "epochs", (row["sft"] or {}).get("epochs"))
PY
for work in "$@"; do cp -r "$work/dvclive" "$report/logs/dvclive_$(basename "$work")" 2>/dev/null; done
tar -czf "$report/logs.tar.gz" -C "$report" logs && rm -rf "$report/logs"
