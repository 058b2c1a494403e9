"""Stage ``evaluate``: valid and test HR@K / NDCG@K of every trained generative recommender.

Reads ``--dataset`` (users), ``--sids`` (``codes.npy``), the model of ``--sft`` and of ``--grpo``
where it exists (the stage fails when neither does), ``--interests`` when a model's prompt uses
user interests, and ``--baseline-metrics`` when present. Writes ``--metrics`` (per model and
split: HR@K, NDCG@K, invalid / duplicate / missing beams, decoding wall time; the baselines
next to them), ``--ranks`` (each test user's target rank per ranker, the baselines' from
``--baselines`` included: what paired comparisons between runs read, git-tracked like the
metrics) and ``--plots`` (test HR@K and NDCG@K by K, one file per ranker). Paths come from the
command in ``dvc.yaml``.
Params: ``base.seed``, ``evaluate``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("evaluate")  # all params checked, outputs locked: before the slow imports below

import logging

from deepinterestgr.common import params
from deepinterestgr.common.artifacts import command_line_files
from deepinterestgr.common.errors import PipelineError
from deepinterestgr.common.io import (
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

FILES = command_line_files("evaluate")  # paths from the command in dvc.yaml
log = logging.getLogger("evaluate")


def main() -> None:
    base = params.load("base")
    config = params.load("evaluate")
    seed_everything(base.seed)
    candidates = {"sft": FILES.sft.model, "grpo": FILES.grpo.model}
    models = {name: folder for name, folder in candidates.items() if folder.exists()}
    if not models:
        raise PipelineError(
            f"no model to evaluate: none of {', '.join(map(str, candidates.values()))} exists; "
            "run the sft stage (dvc repro sft) first"
        )
    for name in candidates.keys() - models.keys():
        log.warning("no %s model at %s: not evaluated", name, candidates[name])

    users = read_users(FILES.dataset.users)
    codes = load_array(FILES.sids.codes)
    log.info("read %s users and SIDs of %s items", f"{len(users):,}", f"{len(codes):,}")

    report: dict = {"exclude_history": config.exclude_history, "num_beams": config.num_beams}
    test_metrics, ranks = {}, {}
    for name, folder in models.items():
        recommender = load_recommender(folder)
        texts = None
        if recommender.spec.reads_user_text:
            texts = user_texts(users, read_user_interests(FILES.interests.users))
        report[name] = {}
        for split in ("valid", "test"):
            evaluation = evaluate_recommender(recommender, codes, users, split, config, texts)
            report[name][split] = evaluation.to_dict()
            if split == "test":
                ranks[name] = evaluation.result.ranks
        test_metrics[name] = report[name]["test"]

    if FILES.baseline_metrics.exists():
        baselines = read_json(FILES.baseline_metrics)
        for name in ("popularity", "sasrec"):
            if name in baselines:
                report[name] = {split: baselines[name][split] for split in ("valid", "test")}
                test_metrics[name] = baselines[name]["test"]
                if FILES.baselines.test_ranks(name).exists():
                    ranks[name] = load_array(FILES.baselines.test_ranks(name))
    write_json(FILES.metrics, report)
    write_ranks(FILES.ranks, "test", ranks)
    with new_folder(FILES.plots) as plots:
        for name, metrics in test_metrics.items():
            write_json(plots / f"{name}.json", hr_by_k_rows(metrics, config.ks))
    log.info("wrote %s and %s plot files under %s", FILES.metrics, len(test_metrics), FILES.plots)


if __name__ == "__main__":
    main()
