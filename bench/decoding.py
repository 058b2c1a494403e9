"""Constrained beam search vs transformers' ``generate(prefix_allowed_tokens_fn=...)``.

Same model, same prompts (test histories of the first ``--users`` users), same process, both
greedy beam search with ``--beams`` beams over the prefix tree of valid SIDs, no history
exclusion (``generate`` has no per-user leaf mask). Reports users/s of each, the speed-up and
the share of users whose ranked top-K lists are identical. Prints one JSON line.

    .venv/bin/python bench/decoding.py --work . [--users 256] [--beams 20] [--batch-size 32]

``--work`` is a project workspace after ``dvc repro sft`` (e.g. inside a Beauty experiment):
the users, SIDs and trained SFT model are read where its ``dvc.yaml`` has the ``evaluate`` stage
read them. Only causal LMs run through ``generate``: use it with ``sft.backbone=token``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepinterestgr.common.artifacts import declared_files
from deepinterestgr.common.io import load_array, read_users
from deepinterestgr.recommender.constrained_decoding import (
    SidPrefixTree,
    constrained_beam_search,
    prefix_allowed_tokens_fn,
)
from deepinterestgr.recommender.generative_model import load_recommender
from deepinterestgr.recommender.prompt import prompt_writer
from deepinterestgr.recommender.sid_tokenizer import sid_token_ids


def generate_top_k(model, prompts, tree, beams, pad_id, depth) -> list[list[int]]:
    """Ranked item ids per prompt from ``generate`` with forced greedy beam settings."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        num_beams=beams,
        num_return_sequences=beams,
        do_sample=False,
        temperature=None,
        top_k=None,
        top_p=None,
        length_penalty=0.0,
        max_new_tokens=depth,
        min_new_tokens=depth,
        eos_token_id=None,
        pad_token_id=pad_id,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(tree, width),
    )
    items = [tree.item_of(seq[width:].tolist()) for seq in out]
    return [items[row * beams : (row + 1) * beams] for row in range(len(prompts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("."))
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    files = declared_files("evaluate", args.work / "dvc.yaml")
    model, tokenizer, spec = load_recommender(args.work / files.sft.model)
    if spec.reads_user_text:
        raise SystemExit(
            "the benchmark builds history-only prompts; retrain with inference_task history"
        )
    users = read_users(args.work / files.dataset.users)[: args.users]
    codes = load_array(args.work / files.sids.codes)
    sid_ids = sid_token_ids(tokenizer, codes)
    tree = SidPrefixTree.from_codes(sid_ids)
    writer = prompt_writer(tokenizer, sid_ids, spec, None)
    prompts = [writer.prompt(u.user_id, u.test_history) for u in users]
    batches = [prompts[i : i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]

    timings, ranked = {}, {}
    for name in ("generate", "constrained"):
        start = time.perf_counter()
        rows = []
        for batch in batches:
            if name == "generate":
                rows += generate_top_k(
                    model, batch, tree, args.beams, tokenizer.pad_token_id, tree.depth
                )
            else:
                result = constrained_beam_search(
                    model, batch, tree, args.beams, tokenizer.pad_token_id
                )
                rows += result.item_ids.tolist()
        timings[name] = time.perf_counter() - start
        ranked[name] = rows
    same = sum(a == b for a, b in zip(ranked["generate"], ranked["constrained"], strict=True))
    same_sets = sum(
        set(a) == set(b) for a, b in zip(ranked["generate"], ranked["constrained"], strict=True)
    )
    print(
        json.dumps(
            {
                "users": len(prompts),
                "beams": args.beams,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "items": len(codes),
                "generate_users_per_s": round(len(prompts) / timings["generate"], 2),
                "constrained_users_per_s": round(len(prompts) / timings["constrained"], 2),
                "speedup": round(timings["generate"] / timings["constrained"], 2),
                "identical_top_k_share": same / len(prompts),
                "identical_top_k_set_share": same_sets / len(prompts),
            }
        )
    )


if __name__ == "__main__":
    main()
