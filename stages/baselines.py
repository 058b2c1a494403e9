"""Stage ``baselines``: popularity and SASRec, ranked under the project's evaluation protocol.

Reads ``--dataset`` (items, users). Writes ``--baselines``: ``popularity.npy`` (int64 ``[N]``
training counts), ``sasrec.pt`` (best SASRec checkpoint), ``<ranker>_test_ranks.npy`` (each
user's test rank, for paired comparisons); ``--curve`` (per epoch: loss, validation NDCG,
seconds; a git-tracked DVC plot) and ``--metrics`` (valid and test HR@K / NDCG@K of each
baseline, the ``exclude_history`` flag, SASRec's best epoch, epochs run and wall time). Paths
come from the command in ``dvc.yaml``. Params: ``base.seed``, ``baselines``, ``evaluate.ks``,
``evaluate.exclude_history``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("baselines")  # all params checked, outputs locked: before the slow imports below

import logging

import numpy as np

from deepinterestgr.baselines.popularity import PopularityRanker, training_counts
from deepinterestgr.baselines.sasrec import SASRecRanker, save_checkpoint, train_sasrec
from deepinterestgr.common import params
from deepinterestgr.common.artifacts import BaselineFiles, command_line_files
from deepinterestgr.common.io import (
    UserSequence,
    new_folder,
    read_items,
    read_users,
    save_array,
    write_json,
)
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.evaluation.ranking import Ranker, evaluate_ranker

FILES = command_line_files("baselines")  # paths from the command in dvc.yaml
log = logging.getLogger("baselines")


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
    base = params.load("base")
    config = params.load("baselines")
    evaluate = params.load("evaluate")
    seed_everything(base.seed)

    items = read_items(FILES.dataset.items)
    users = read_users(FILES.dataset.users)
    log.info("read %s items and %s users", f"{len(items):,}", f"{len(users):,}")

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
    with new_folder(FILES.baselines.folder) as folder:  # swapped in whole once written
        written = BaselineFiles(folder)
        save_array(written.popularity, counts)
        save_checkpoint(written.sasrec, trained.model, config.sasrec)
        save_array(written.test_ranks("popularity"), popularity_ranks)
        save_array(written.test_ranks("sasrec"), sasrec_ranks)

    write_json(FILES.curve, [epoch._asdict() for epoch in trained.history])
    write_json(
        FILES.metrics,
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
    log.info(
        "SASRec: best epoch %d of %d, %.1f s wall, %.1f s CPU; wrote %s",
        trained.best_epoch,
        trained.epochs_run,
        trained.wall_time_s,
        trained.cpu_time_s,
        FILES.metrics,
    )


if __name__ == "__main__":
    main()
