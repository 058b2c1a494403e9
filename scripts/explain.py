"""Explain a user's recommendations: history, mined interests, top-K with matched interests.

    python scripts/explain.py --user 0 --k 10                 # terminal table
    python scripts/explain.py --user A1YJEY40YUW4SE --json out.json

Reads the pipeline's outputs where ``dvc.yaml`` puts them (run ``dvc repro`` first): the
dataset, user interests, labelled item interests, the SIDs and the GRPO model (else the SFT
model), as the ``evaluate`` and ``sft`` stages read them. The
user's history is everything before the held-out test item, which is shown for reference.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from deepinterestgr.common import params
from deepinterestgr.common.artifacts import declared_files
from deepinterestgr.common.io import (
    load_array,
    read_item_interests,
    read_items,
    read_user_interests,
    read_users,
)
from deepinterestgr.evaluation.generative import recommend
from deepinterestgr.items.explain import (
    Explanation,
    Recommendation,
    descriptors,
    explanation_to_dict,
    match_interests,
    render_table,
    title_of,
)
from deepinterestgr.items.semantic_ids import format_sid
from deepinterestgr.items.text_encoder import encode_texts
from deepinterestgr.recommender.generative_model import load_recommender
from deepinterestgr.recommender.prompt import user_text

EVALUATED = declared_files("evaluate")
DATASET = EVALUATED.dataset
MODELS = (EVALUATED.grpo.model, EVALUATED.sft.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="user id (0..U-1) or source user id")
    parser.add_argument("--k", type=int, default=10, help="recommendations to show")
    parser.add_argument("--min-similarity", type=float, default=0.5, help="interest match cosine")
    parser.add_argument("--json", type=Path, help="also write the explanation here as JSON")
    parser.add_argument("--model", type=Path, help="model folder (default: GRPO, else SFT)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    items = read_items(DATASET.items)
    users = read_users(DATASET.users)
    by_source = {u.source_id: u for u in users}
    user = users[int(args.user)] if args.user.isdigit() else by_source.get(args.user)
    if user is None:
        raise SystemExit(f"{DATASET.users}: no user '{args.user}'")
    user_interests = {r.user_id: r for r in read_user_interests(EVALUATED.interests.users)}
    item_interests = read_item_interests(declared_files("sft").labelled.items)
    codes = load_array(EVALUATED.sids.codes)
    model_dir = args.model or next((m for m in MODELS if m.exists()), None)
    if model_dir is None:
        raise SystemExit(f"no trained model in {' or '.join(map(str, MODELS))}: dvc repro")

    recommender = load_recommender(model_dir)
    history = user.test_history
    interests_row = user_interests.get(user.user_id)
    texts = None
    if recommender.spec.reads_user_text:
        texts = [""] * len(users)
        texts[user.user_id] = user_text(interests_row)
    evaluate = params.load("evaluate")
    beams = recommend(
        recommender,
        codes,
        [user.user_id],
        [history],
        max(args.k, 1),
        1,
        texts,
        evaluate.exclude_history,
    )
    ranked = [i for i in beams.item_ids[0].tolist() if i >= 0][: args.k]

    mined = descriptors(interests_row.interests, positive_only=False) if interests_row else []
    per_item = {i: descriptors(item_interests[i].interests, positive_only=True) for i in ranked}
    vocabulary = sorted({*mined, *(d for ds in per_item.values() for d in ds)})
    vectors = dict(zip(vocabulary, encode_texts(vocabulary), strict=True)) if vocabulary else {}

    def stack(strings: list[str]) -> np.ndarray:
        return np.stack([vectors[t] for t in strings]) if strings else np.zeros((0, 1))

    recommendations = tuple(
        Recommendation(
            rank=rank,
            item_id=item_id,
            title=title_of(items[item_id]),
            sid=format_sid(tuple(int(c) for c in codes[item_id])),
            matches=match_interests(
                mined,
                per_item[item_id],
                stack(mined),
                stack(per_item[item_id]),
                args.min_similarity,
                max_matches=3,
            ),
        )
        for rank, item_id in enumerate(ranked, start=1)
    )
    explanation = Explanation(
        user_id=user.user_id,
        source_id=user.source_id,
        history=tuple((i, title_of(items[i])) for i in history),
        user_interests=tuple(mined),
        recommendations=recommendations,
        target=(user.test_target, title_of(items[user.test_target])),
    )
    print(render_table(explanation))
    if args.json:
        args.json.write_text(json.dumps(explanation_to_dict(explanation), indent=2) + "\n")


if __name__ == "__main__":
    main()
