"""Paired comparison of rankers across recorded runs: differences with bootstrap intervals.

    python scripts/compare_runs.py results/beauty-b:sft results/beauty:sft results/beauty-c:sft
    python scripts/compare_runs.py results/beauty:sasrec results/beauty:sft --k 10 --json out.json

Each argument is ``FOLDER:RANKER``: a workspace after ``dvc repro`` or a recorded run, whose
``metrics/ranks.json`` (written by the ``evaluate`` stage) holds each test user's target rank
per ranker (-1 when not in the list). The first argument is the reference:
every other row shows its HR@K and NDCG@K minus the reference's, with a paired percentile
bootstrap interval over users (the same users in every run: same data, same split). Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepinterestgr.common.io import read_ranks
from deepinterestgr.evaluation.metrics import paired_bootstrap, user_hits, user_ndcg


def load_ranks(spec: str):
    folder, _, ranker = spec.rpartition(":")
    if not folder or not ranker:
        raise SystemExit(f"{spec}: expected FOLDER:RANKER, e.g. results/beauty:sft")
    path = Path(folder) / "metrics" / "ranks.json"
    if not path.exists():
        raise SystemExit(f"{path}: missing (is {folder} a workspace after dvc repro or a record?)")
    ranks = read_ranks(path)
    if ranker not in ranks:
        raise SystemExit(f"{path}: no ranker '{ranker}' (found: {', '.join(ranks)})")
    return ranks[ranker]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="FOLDER:RANKER, the first is the reference")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    reference = load_ranks(args.runs[0])
    rows = []
    for spec in args.runs:
        ranks = load_ranks(spec)
        if ranks.shape != reference.shape:
            raise SystemExit(f"{spec}: {len(ranks):,} users, the reference has {len(reference):,}")
        row = {"run": spec, f"hr@{args.k}": float(user_hits(ranks, args.k).mean())}
        row[f"ndcg@{args.k}"] = float(user_ndcg(ranks, args.k).mean())
        for name, per_user in (("hr", user_hits), ("ndcg", user_ndcg)):
            interval = paired_bootstrap(
                per_user(ranks, args.k).astype(float),
                per_user(reference, args.k).astype(float),
                args.resamples,
                args.confidence,
                args.seed,
            )
            row[f"{name}_diff"] = interval.difference
            row[f"{name}_interval"] = [interval.low, interval.high]
        rows.append(row)

    k, share = args.k, f"{args.confidence:.0%}"
    print(f"| run | HR@{k} | NDCG@{k} | ΔHR@{k} [{share}] | ΔNDCG@{k} [{share}] |")
    print("|---|---|---|---|---|")
    for row in rows:
        cells = [row["run"], f"{row[f'hr@{args.k}']:.4f}", f"{row[f'ndcg@{args.k}']:.4f}"]
        for name in ("hr", "ndcg"):
            low, high = row[f"{name}_interval"]
            cells.append(f"{row[f'{name}_diff']:+.4f} [{low:+.4f}, {high:+.4f}]")
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
