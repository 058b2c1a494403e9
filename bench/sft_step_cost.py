"""What an SFT training step costs, per backbone, head and task, in one process.

Reads the workspace's stage outputs where ``dvc.yaml`` puts them (the dataset, the SIDs, the
labelled interests: the ``sft`` stage's inputs; run ``dvc repro rqvae`` first, e.g. inside a
Beauty experiment) and
the ``sft`` params, builds the same examples the ``sft`` stage trains on, and times
forward + backward + AdamW step on identical batches for:

* ``token+trl``   the token-level backbone with TRL's fused LM head (the baseline: what
                  ``SFTTrainer`` runs on a CPU unless told otherwise), NaN fill on
* ``token+trl-nofill`` the same with the fill off
* ``token+plain`` the token-level backbone with a plain head on the labelled positions
* ``item``        the item-level backbone with its tree-aware head

for the ``history`` task, and per task for the item-level backbone (``interests_to_sid``,
``sid_to_interests``: the alignment tasks' own cost). Prints one JSON line per case with
ms per step, examples per second and the speed-up over the baseline.

    python bench/sft_step_cost.py [--batch 128] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence

import numpy as np
import torch
from trl.trainer.utils import add_fused_lm_head

from deepinterestgr.common import params
from deepinterestgr.common.artifacts import declared_files
from deepinterestgr.common.io import (
    align_item_interests,
    load_array,
    read_item_interests,
    read_items,
    read_users,
)
from deepinterestgr.recommender.generative_model import build_backbone
from deepinterestgr.recommender.prompt import PromptSpec
from deepinterestgr.recommender.sft_data import IGNORE, SftExample, build_encoder, item_text
from deepinterestgr.recommender.sid_tokenizer import sid_token_ids
from deepinterestgr.recommender.trainer_hooks import add_plain_lm_head

SFT_INPUTS = declared_files("sft")
DATASET, CODES, ITEM_INTERESTS = (
    SFT_INPUTS.dataset,
    SFT_INPUTS.sids.codes,
    SFT_INPUTS.labelled.items,
)


def batches(examples: Sequence[SftExample], size: int, count: int, pad: int):
    """``count`` right-padded batches of ``size`` examples, drawn once with a fixed seed."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        chosen = [examples[i] for i in rng.choice(len(examples), size=size, replace=False)]
        width = max(len(e.input_ids) for e in chosen)
        ids = torch.full((size, width), pad)
        labels = torch.full((size, width), IGNORE)
        for row, example in enumerate(chosen):
            ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
            labels[row, : len(example.labels)] = torch.tensor(example.labels)
        out.append((ids, (ids != pad).long(), labels))
    return out


def time_steps(model: torch.nn.Module, data, fill: bool) -> float:
    """Seconds per optimiser step over ``data`` (after one warm-up step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step(ids, mask, labels):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = fill
    step(*data[0])
    start = time.perf_counter()
    for batch in data:
        step(*batch)
    torch.utils.deterministic.fill_uninitialized_memory = True
    return (time.perf_counter() - start) / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = params.load("sft")
    items, users = read_items(DATASET.items), read_users(DATASET.users)
    codes = load_array(CODES)
    mined = read_item_interests(ITEM_INTERESTS)
    interests = align_item_interests(mined, len(items), ITEM_INTERESTS)
    texts = [item_text(i, r, True) for i, r in zip(items, interests, strict=True)]
    # A text task on, so every backbone carries the same word vocabulary.
    weights = {**config.task_weights, "sid_to_interests": 1.0}
    with_text = dataclasses.replace(config, task_weights=weights)

    def backbone(name: str):
        torch.manual_seed(0)
        return build_backbone(dataclasses.replace(with_text, backbone=name), codes, texts)

    spec = PromptSpec("history", config.max_history, config.max_text_tokens)
    baseline = None
    cases = [  # (name, backbone, head, deterministic-mode fill)
        ("token+trl", "token", "trl", True),
        ("token+trl-nofill", "token", "trl", False),
        ("token+plain", "token", "plain", False),
        ("item", "item", "model", False),
    ]
    for name, kind, head, fill in cases:
        model, tokenizer = backbone(kind)
        if head == "trl":
            add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        elif head == "plain":
            add_plain_lm_head(model)
        sids = sid_token_ids(tokenizer, codes)
        encoder = build_encoder(tokenizer, sids, spec, texts, [""] * len(users))
        tasks = ["history"] + (["interests_to_sid", "sid_to_interests"] if kind == "item" else [])
        for task in tasks:
            examples = encoder.task_examples(users, task)
            data = batches(examples, args.batch, args.steps, tokenizer.pad_token_id)
            seconds = time_steps(model, data, fill)
            row = {
                "case": name,
                "task": task,
                "ms_per_step": round(1000 * seconds, 1),
                "examples_per_s": round(args.batch / seconds, 1),
                "vocab": len(tokenizer),
                "parameters": sum(p.numel() for p in model.parameters()),
            }
            if task == "history":
                baseline = baseline or seconds
                row["speedup_vs_token_trl"] = round(baseline / seconds, 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
