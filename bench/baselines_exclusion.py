"""Test metrics of the trained baselines with and without history exclusion.

Run from a project folder after ``dvc repro baselines`` (reads ``data/download/`` and
``data/baselines/``, ``params.yaml``'s ``evaluate.ks`` and ``baselines.eval_batch_size``);
prints one JSON object: ``{baseline: {"exclude_history=true": {...}, "...=false": {...}}}``.
It shows how much the protocol flag alone moves the numbers (no Beauty user repeats an item,
so keeping seen items in the ranking only adds certain misses).

    .venv/bin/python bench/baselines_exclusion.py
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from deepinterestgr.baselines.popularity import PopularityRanker
from deepinterestgr.baselines.sasrec import SASRecRanker, load_checkpoint
from deepinterestgr.common import params
from deepinterestgr.common.io import load_array, read_users
from deepinterestgr.evaluation.ranking import evaluate_ranker


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = params.load("baselines")
    evaluate = params.load("evaluate")
    users = read_users(Path("data/download/users.jsonl"))
    rankers = {
        "popularity": PopularityRanker(load_array("data/baselines/popularity.npy")),
        "sasrec": SASRecRanker(load_checkpoint("data/baselines/sasrec.pt")),
    }
    table = {
        name: {
            f"exclude_history={str(flag).lower()}": evaluate_ranker(
                ranker, users, "test", evaluate.ks, flag, config.eval_batch_size
            ).to_dict()
            for flag in (True, False)
        }
        for name, ranker in rankers.items()
    }
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
