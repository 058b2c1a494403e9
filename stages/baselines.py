"""Stage ``baselines``: popularity and SASRec, ranked under the project's evaluation protocol.

Reads ``data/download/items.jsonl`` and ``data/download/users.jsonl``. Writes
``data/baselines/popularity.npy`` (int64 ``[N]`` training counts), ``data/baselines/sasrec.pt``
(best SASRec checkpoint), ``data/baselines/<ranker>_test_ranks.npy`` (each user's test rank,
for paired comparisons), ``metrics/curves/sasrec_validation.json`` (per epoch: loss,
validation NDCG, seconds; a git-tracked DVC plot) and ``metrics/baselines.json`` (valid and
test HR@K / NDCG@K of each baseline, the ``exclude_history`` flag, SASRec's best epoch, epochs
run and wall time). Params: ``base.seed``, ``baselines``, ``evaluate.ks``,
``evaluate.exclude_history``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("baselines")  # all params checked, outputs locked: before the slow imports below

import logging
from pathlib import Path

import numpy as np

from deepinterestgr.baselines.popularity import PopularityRanker, training_counts
from deepinterestgr.baselines.sasrec import SASRecRanker, save_checkpoint, train_sasrec
from deepinterestgr.common import params
from deepinterestgr.common.io import (
    DatasetFiles,
    UserSequence,
    new_folder,
    read_items,
    read_users,
    save_array,
    write_json,
)
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.evaluation.ranking import Ranker, evaluate_ranker

INPUT = DatasetFiles(Path("data/download"))
OUTPUT = Path("data/baselines")
METRICS = Path("metrics/baselines.json")
CURVE = Path("metrics/curves/sasrec_validation.json")


def evaluate_splits(
    ranker: Ranker, users: list[UserSequence], evaluate: params.EvaluateParams, batch_size: int
) -> tuple[dict[str, dict], np.ndarray]:
    """Valid and test metrics under the protocol, test under the other history setting, and
    each user's test rank under the protocol (int ``[U]``, -1 beyond max K)."""
    results = {
        split: evaluate_ranker(
            ranker, users, split, evaluate.ks, evaluate.exclude_history, batch_size
        )
        for split in ("valid", "test")
    }
    other = not evaluate.exclude_history
    report = {split: result.to_dict() for split, result in results.items()}
    report[f"test_exclude_history_{str(other).lower()}"] = evaluate_ranker(
        ranker, users, "test", evaluate.ks, other, batch_size
    ).to_dict()
    return report, results["test"].ranks


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    base = params.load("base")
    config = params.load("baselines")
    evaluate = params.load("evaluate")
    seed_everything(base.seed)

    items = read_items(INPUT.items)
    users = read_users(INPUT.users)
    logging.info("read %s items and %s users", f"{len(items):,}", f"{len(users):,}")

    counts = training_counts(users, len(items))
    popularity, popularity_ranks = evaluate_splits(
        PopularityRanker(counts), users, evaluate, config.eval_batch_size
    )

    trained = train_sasrec(
        users,
        len(items),
        config.sasrec,
        evaluate.exclude_history,
        config.eval_batch_size,
        base.seed,
    )
    sasrec, sasrec_ranks = evaluate_splits(
        SASRecRanker(trained.model), users, evaluate, config.eval_batch_size
    )
    with new_folder(OUTPUT) as folder:  # swapped in whole once every file is written
        save_array(folder / "popularity.npy", counts)
        save_checkpoint(folder / "sasrec.pt", trained.model, config.sasrec)
        save_array(folder / "popularity_test_ranks.npy", popularity_ranks)
        save_array(folder / "sasrec_test_ranks.npy", sasrec_ranks)

    write_json(CURVE, [epoch._asdict() for epoch in trained.history])
    write_json(
        METRICS,
        {
            "exclude_history": evaluate.exclude_history,
            "num_users": len(users),
            "num_items": len(items),
            "popularity": popularity,
            "sasrec": {
                **sasrec,
                "best_epoch": trained.best_epoch,
                "epochs_run": trained.epochs_run,
                "wall_time_s": round(trained.wall_time_s, 1),
                "cpu_time_s": round(trained.cpu_time_s, 1),
            },
        },
    )
    logging.info(
        "SASRec: best epoch %d of %d, %.1f s wall, %.1f s CPU; wrote %s",
        trained.best_epoch,
        trained.epochs_run,
        trained.wall_time_s,
        trained.cpu_time_s,
        METRICS,
    )


if __name__ == "__main__":
    main()
