"""Stage ``sft``: train the generative recommender on SID sequences and interest alignment.

Reads ``--dataset`` (items, users), ``--sids`` (``codes.npy``, int64 ``[N, L+1]``), ``--labelled``
(item interests; negatively labelled ones are left out) and ``--interests`` (user interests from
training histories; may be empty). Writes ``--recommender`` (``model/``: model, tokenizer,
``recommender.json``), the training curves ``--live``, ``--metrics`` (the selection metric of the
kept checkpoint, steps, epochs, wall time, example counts, parameter count) and ``--curve``
(every evaluation: epoch, step, wall-clock minutes, validation loss and ranking metrics; a
git-tracked DVC plot, so every experiment keeps its learning curve). Paths come from the
command in ``dvc.yaml``.
Params: ``base.seed``, ``sft``, and the protocol of ``evaluate`` (beams, batch size, history
exclusion) for the validation ranking that selects the checkpoint.
Runs as is or under ``accelerate launch stages/sft.py $(python scripts/stage_arguments.py sft)``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("sft")  # all params checked, outputs locked: before the slow imports below

import logging
import shutil

import numpy as np

from deepinterestgr.common import params
from deepinterestgr.common.artifacts import command_line_files
from deepinterestgr.common.io import (
    align_item_interests,
    load_array,
    new_folder,
    read_item_interests,
    read_items,
    read_user_interests,
    read_users,
    write_json,
)
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.evaluation.generative import validation_ranker
from deepinterestgr.recommender.generative_model import build_backbone, save_recommender
from deepinterestgr.recommender.prompt import TASKS, PromptSpec, user_texts
from deepinterestgr.recommender.sft_data import build_encoder, item_text, mix_tasks, sample_users
from deepinterestgr.recommender.sft_training import train_sft
from deepinterestgr.recommender.sid_tokenizer import sid_token_ids

FILES = command_line_files("sft")  # paths from the command in dvc.yaml
log = logging.getLogger("sft")


def main() -> None:
    base = params.load("base")
    config = params.load("sft")
    protocol = params.load("evaluate")  # the validation ranking repeats the test protocol
    rng = seed_everything(base.seed)

    items, users = read_items(FILES.dataset.items), read_users(FILES.dataset.users)
    codes = load_array(FILES.sids.codes)
    if codes.shape[0] != len(items):
        raise ValueError(f"{FILES.sids.codes}: {codes.shape[0]} rows for {len(items)} items")
    interests = align_item_interests(
        read_item_interests(FILES.labelled.items), len(items), FILES.labelled.items
    )
    user_rows = read_user_interests(FILES.interests.users)
    item_texts = [
        item_text(i, r, config.title_in_alignment) for i, r in zip(items, interests, strict=True)
    ]
    texts = user_texts(users, user_rows)
    log.info(
        "read %s items, %s users, %s user interest rows, SIDs %s",
        f"{len(items):,}",
        f"{len(users):,}",
        f"{len(user_rows):,}",
        codes.shape,
    )

    model, tokenizer = build_backbone(config, codes, item_texts + texts)
    spec = PromptSpec(config.inference_task, config.max_history, config.max_text_tokens)
    sid_ids = sid_token_ids(tokenizer, codes)
    encoder = build_encoder(tokenizer, sid_ids, spec, item_texts, texts)
    weights = config.task_weights
    train = mix_tasks(
        {t: encoder.task_examples(users, t) for t in TASKS if weights.get(t, 0) > 0}, weights, rng
    )
    chosen = sample_users(users, config.selection.users, rng)
    valid = encoder.validation_examples(chosen)
    log.info("%s training and %s validation examples", f"{len(train):,}", f"{len(valid):,}")

    validate = None
    if config.selection.metric != "loss":
        k = int(config.selection.metric.split("@")[1])
        validate = validation_ranker(encoder.prompts, chosen, tokenizer.pad_token_id, k, protocol)
    result = train_sft(
        model,
        tokenizer,
        train,
        valid,
        config,
        base.seed,
        validate,
        FILES.recommender.checkpoints,
        FILES.live,
    )
    if result.is_main_process:
        with new_folder(FILES.recommender.model) as model_dir:  # swapped in whole once written
            save_recommender(model_dir, result.model, tokenizer, spec)
        shutil.rmtree(FILES.recommender.checkpoints, ignore_errors=True)
        write_json(
            FILES.metrics,
            {
                "selection_metric": config.selection.metric,
                "best_valid": round(result.best_metric, 5),
                "best_step": result.best_step,
                "steps": result.steps,
                "epochs": round(result.epochs, 2),
                "wall_time_s": round(result.wall_time_s, 1),
                "stopped_by_time_budget": result.stopped_by_time,
                "train_examples": len(train),
                "valid_users": len(chosen),
                "vocab_size": len(tokenizer),
                "parameters": int(sum(np.prod(p.shape) for p in result.model.parameters())),
            },
        )
        write_json(FILES.curve, [validation_row(row) for row in result.evaluations])
        log.info("wrote %s, %s and %s", FILES.recommender.model, FILES.metrics, FILES.curve)


def validation_row(evaluation: dict[str, float]) -> dict[str, float]:
    """One point of the validation curve: step, epoch, minutes and every metric, rounded."""
    return {key: round(value, 5) for key, value in evaluation.items()}


if __name__ == "__main__":
    main()
