"""Learning curves of one run: validation NDCG@10 / HR@10 against wall-clock minutes of
training, for the generative model (``sft``) and the pipeline's SASRec (``baselines``).

Both curves come from the same DVC run (same machine, data and split). ``sft`` writes
``metrics/curves/sft_validation.json``: after every epoch, the minutes since training began
and the validation ranking's metrics on the sample of ``sft.selection.users``. ``baselines``
writes ``metrics/curves/sasrec_validation.json``: per epoch, its seconds and the validation
metrics over every validation user (a less noisy estimate of the same quantity). Give a
workspace after ``dvc repro`` (default ``.``) or a recorded run (``results/<run>/``). Writes
``<out>/sft.json`` and ``<out>/sasrec.json``, rows ``{minutes, epoch, ndcg@10[, hr@10]}``,
shown with

    dvc plots show <out>/sft.json <out>/sasrec.json -x minutes -y ndcg@10

and prints one JSON line per ranker: the best value, the minutes it took, and the minutes each
needed to reach 90 % of SASRec's best (the bar a generative model has to clear).

    python bench/learning_curve.py [--run results/beauty] [--out bench/out/learning_curve]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepinterestgr.common.io import read_json, write_json

CURVES = {  # ranker -> its curve in a workspace or a record
    "sft": Path("metrics/curves/sft_validation.json"),
    "sasrec": Path("metrics/curves/sasrec_validation.json"),
}


def read_curve(run: Path, ranker: str) -> list[dict[str, float]]:
    """Rows ``{minutes, epoch, ndcg@10[, hr@10]}`` of one ranker, in training order."""
    path = run / CURVES[ranker]
    if not path.exists():
        raise SystemExit(f"{path}: missing; run dvc repro (or record the run) first")
    rows = read_json(path)
    if ranker == "sft":
        return [
            {"minutes": r["minutes"], "epoch": r["epoch"], "ndcg@10": r["ndcg@10"]}
            | ({"hr@10": r["hr@10"]} if "hr@10" in r else {})
            for r in rows
        ]
    curve, seconds = [], 0.0
    for r in rows:  # SASRec logs each epoch's own duration, validation included
        seconds += r["seconds"]
        point = {"minutes": seconds / 60, "epoch": r["epoch"], "ndcg@10": r["valid_ndcg"]}
        if "valid_hr" in r:
            point["hr@10"] = r["valid_hr"]
        curve.append(point)
    return curve


def minutes_to(curve: list[dict[str, float]], level: float) -> float | None:
    reached = next((row["minutes"] for row in curve if row["ndcg@10"] >= level), None)
    return None if reached is None else round(reached, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("bench/out/learning_curve"))
    args = parser.parse_args()
    curves = {ranker: read_curve(args.run, ranker) for ranker in CURVES}
    bar = 0.9 * max(row["ndcg@10"] for row in curves["sasrec"])
    for ranker, curve in curves.items():
        write_json(args.out / f"{ranker}.json", curve)
        best = max(curve, key=lambda row: row["ndcg@10"])
        print(
            json.dumps(
                {
                    "ranker": ranker,
                    "best_valid_ndcg@10": round(best["ndcg@10"], 5),
                    "at_minutes": round(best["minutes"], 1),
                    "epochs": len(curve),
                    "minutes_to_90pct_of_sasrec_best": minutes_to(curve, bar),
                }
            )
        )


if __name__ == "__main__":
    main()
