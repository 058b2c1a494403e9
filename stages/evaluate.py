"""Stage ``evaluate``: valid and test HR@K / NDCG@K of every trained generative recommender.

Reads ``data/download/users.jsonl``, ``data/rqvae/codes.npy``, each model folder of
:data:`MODELS` that exists (``data/sft/model``; ``data/grpo/model`` once trained; the stage
fails when there is none),
``data/mine/users.jsonl`` when a model's prompt uses user interests, and
``metrics/baselines.json`` when present (the stage depends on ``data/baselines``, written
together with it). Writes ``metrics/eval.json`` (per model and split:
HR@K, NDCG@K, invalid / duplicate / missing beams, decoding wall time; the baselines next to
them), ``metrics/ranks.json`` (each test user's target rank per ranker, the baselines' from
``data/baselines/<ranker>_test_ranks.npy`` included: what paired comparisons between runs read,
git-tracked like the metrics) and
``plots/evaluate/hr_at_k/<ranker>.json`` (test HR@K and NDCG@K by K, one file per ranker).
Params: ``base.seed``, ``evaluate``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("evaluate")  # all params checked, outputs locked: before the slow imports below

import logging
from pathlib import Path

from deepinterestgr.common import params
from deepinterestgr.common.errors import PipelineError
from deepinterestgr.common.io import (
    DatasetFiles,
    load_array,
    new_folder,
    read_json,
    read_user_interests,
    read_users,
    write_json,
    write_ranks,
)
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.evaluation.generative import evaluate_recommender, hr_by_k_rows
from deepinterestgr.recommender.generative_model import load_recommender
from deepinterestgr.recommender.prompt import user_texts

DATASET = DatasetFiles(Path("data/download"))
CODES = Path("data/rqvae/codes.npy")
USER_INTERESTS = Path("data/mine/users.jsonl")
MODELS = {"sft": Path("data/sft/model"), "grpo": Path("data/grpo/model")}
BASELINES = Path("metrics/baselines.json")
METRICS = Path("metrics/eval.json")
PLOTS = Path("plots/evaluate/hr_at_k")
RANKS = Path("metrics/ranks.json")
BASELINE_RANKS = Path("data/baselines")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    base = params.load("base")
    config = params.load("evaluate")
    seed_everything(base.seed)
    models = {name: folder for name, folder in MODELS.items() if folder.exists()}
    if not models:
        raise PipelineError(
            f"no model to evaluate: none of {', '.join(map(str, MODELS.values()))} exists; "
            "run the sft stage (dvc repro sft) first"
        )
    for name in MODELS.keys() - models.keys():
        logging.warning("no %s model at %s: not evaluated", name, MODELS[name])

    users = read_users(DATASET.users)
    codes = load_array(CODES)
    logging.info("read %s users and SIDs of %s items", f"{len(users):,}", f"{len(codes):,}")

    report: dict = {"exclude_history": config.exclude_history, "num_beams": config.num_beams}
    test_metrics, ranks = {}, {}
    for name, folder in models.items():
        recommender = load_recommender(folder)
        texts = None
        if recommender.spec.reads_user_text:
            texts = user_texts(users, read_user_interests(USER_INTERESTS))
        report[name] = {}
        for split in ("valid", "test"):
            evaluation = evaluate_recommender(recommender, codes, users, split, config, texts)
            report[name][split] = evaluation.to_dict()
            if split == "test":
                ranks[name] = evaluation.result.ranks
        test_metrics[name] = report[name]["test"]

    if BASELINES.exists():
        baselines = read_json(BASELINES)
        for name in ("popularity", "sasrec"):
            if name in baselines:
                report[name] = {split: baselines[name][split] for split in ("valid", "test")}
                test_metrics[name] = baselines[name]["test"]
                if (BASELINE_RANKS / f"{name}_test_ranks.npy").exists():
                    ranks[name] = load_array(BASELINE_RANKS / f"{name}_test_ranks.npy")
    write_json(METRICS, report)
    write_ranks(RANKS, "test", ranks)
    with new_folder(PLOTS) as plots:
        for name, metrics in test_metrics.items():
            write_json(plots / f"{name}.json", hr_by_k_rows(metrics, config.ks))
    logging.info("wrote %s and %s plot files under %s", METRICS, len(test_metrics), PLOTS)


if __name__ == "__main__":
    main()
