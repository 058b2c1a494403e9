"""Evaluating a trained generative recommender under the project's protocol.

Same protocol and metric code as every baseline (:mod:`deepinterestgr.evaluation.ranking`,
:mod:`deepinterestgr.evaluation.metrics`): leave-one-out, full catalogue, HR@K / NDCG@K. The ranked
list of a user is the ``num_beams`` SIDs of
:func:`~deepinterestgr.recommender.constrained_decoding.rank_items`
mapped to items, best first. With ``exclude_history`` the user's history items are masked in
the beam search itself (so no beam is spent on them), which gives the same list as ranking
everything and then dropping seen items.

Decoding checks, independent of the prefix tree: ``invalid`` counts returned beams whose tokens
are no item's SID, ``duplicates`` repeated items within a user's list, ``missing`` beams left
empty because fewer than ``num_beams`` allowed items exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from deepinterestgr.common.io import UserSequence
from deepinterestgr.common.params import EvaluateParams
from deepinterestgr.evaluation.metrics import ranking_metrics, target_ranks
from deepinterestgr.evaluation.ranking import EvaluationResult, Split, split_examples
from deepinterestgr.recommender.constrained_decoding import BeamResult, SidPrefixTree, rank_items
from deepinterestgr.recommender.generative_model import Recommender
from deepinterestgr.recommender.prompt import PromptWriter, prompt_writer
from deepinterestgr.recommender.sid_tokenizer import sid_token_ids

logger = logging.getLogger(__name__)


class DecodingChecks(NamedTuple):
    invalid: int  # returned beams whose token sequence is not a valid SID
    duplicates: int  # repeated items within one user's list (summed over users)
    missing: int  # empty beams (fewer allowed items than beams)


class GenerativeEvaluation(NamedTuple):
    result: EvaluationResult
    checks: DecodingChecks
    wall_time_s: float  # decoding wall time for the split

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.result.to_dict(),
            **self.checks._asdict(),
            "wall_time_s": round(self.wall_time_s, 2),
            "users_per_s": round(self.result.num_users / max(self.wall_time_s, 1e-9), 1),
        }


def decoding_checks(beams: BeamResult, sid_ids: np.ndarray) -> DecodingChecks:
    """Count invalid, duplicate and missing beams. ``sid_ids`` int ``[N, T]``: valid SIDs."""
    valid = {tuple(row) for row in sid_ids.tolist()}
    items = beams.item_ids.numpy()
    returned = items >= 0
    tokens = beams.token_ids.numpy()
    invalid = sum(tuple(seq) not in valid for seq in tokens[returned].tolist())
    duplicates = sum(int(row[row >= 0].size - np.unique(row[row >= 0]).size) for row in items)
    return DecodingChecks(int(invalid), duplicates, int((~returned).sum()))


def evaluate_recommender(
    recommender: Recommender,
    codes: np.ndarray,
    users: Sequence[UserSequence],
    split: Split,
    protocol: EvaluateParams,
    user_texts: Sequence[str] | None = None,
) -> GenerativeEvaluation:
    """HR@K / NDCG@K of ``recommender`` on ``split`` with constrained beam search.

    ``codes`` int ``[N, L+1]``: every item's SID codes. ``protocol``: the cut-offs, the history
    exclusion, the beams (the ranked list) and the users decoded together. ``user_texts``: per
    user id, the interest text its prompt needs when the recommender's prompt task is
    ``interests_history``.
    """
    ks = protocol.ks
    if protocol.num_beams < max(ks):
        raise ValueError(f"num_beams ({protocol.num_beams}) must be at least max(ks) ({max(ks)})")
    examples = split_examples(users, split)
    start = time.perf_counter()
    beams = recommend(
        recommender,
        codes,
        [user.user_id for user in users],
        examples.histories,
        protocol.num_beams,
        protocol.batch_size,
        user_texts,
        protocol.exclude_history,
        progress=f"decode {split}",
    )
    elapsed = time.perf_counter() - start
    ranks = target_ranks(beams.item_ids.numpy()[:, : max(ks)], examples.targets)
    result = EvaluationResult.from_ranks(split, ranks, ks, protocol.exclude_history)
    checks = decoding_checks(beams, sid_token_ids(recommender.tokenizer, codes))
    logger.info(
        "%s: %s users in %.1f s (%.0f users/s), %s; %s",
        split,
        f"{len(users):,}",
        elapsed,
        len(users) / max(elapsed, 1e-9),
        ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()),
        checks,
    )
    return GenerativeEvaluation(result, checks, elapsed)


def recommend(
    recommender: Recommender,
    codes: np.ndarray,
    user_ids: Sequence[int],
    histories: Sequence[Sequence[int]],
    num_beams: int,
    batch_size: int,
    user_texts: Sequence[str] | None = None,
    exclude_history: bool = True,
    progress: str | None = None,
) -> BeamResult:
    """Top-``num_beams`` items per history by constrained beam search, best first.

    ``codes`` int ``[N, L+1]``: every item's SID codes; ``user_texts`` (indexed by user id) is
    needed when the recommender's prompt task is ``interests_history``. With
    ``exclude_history`` the history items are masked inside the search.
    """
    model, tokenizer, spec = recommender
    sid_ids = sid_token_ids(tokenizer, codes)
    writer = prompt_writer(tokenizer, sid_ids, spec, user_texts)
    tree = SidPrefixTree.from_codes(sid_ids)
    prompts = [writer.prompt(u, h) for u, h in zip(user_ids, histories, strict=True)]
    return rank_items(
        model,
        prompts,
        tree,
        num_beams,
        tokenizer.pad_token_id,
        batch_size,
        exclude=histories if exclude_history else None,
        progress=progress,
    )


def validation_ranker(
    writer: PromptWriter,
    users: Sequence[UserSequence],
    pad_token_id: int,
    k: int,
    protocol: EvaluateParams,
) -> Callable[[torch.nn.Module], dict[str, float]]:
    """A function ``model -> {"hr@k": .., "ndcg@k": ..}`` on the validation targets of
    ``users``, under the evaluation ``protocol`` (constrained beam search over the full
    catalogue: its beams, batch size and history exclusion), for model selection during
    training. Prompts are written once, by ``writer``."""
    num_beams = protocol.num_beams
    if num_beams < k:
        raise ValueError(f"num_beams ({num_beams}) must be at least the selection K ({k})")
    held_out = split_examples(users, "valid")
    prompts = [writer.prompt(u.user_id, h) for u, h in zip(users, held_out.histories, strict=True)]
    tree = SidPrefixTree.from_codes(writer.sid_ids)
    exclude = held_out.histories if protocol.exclude_history else None

    def rank(model: torch.nn.Module) -> dict[str, float]:
        beams = rank_items(
            model, prompts, tree, num_beams, pad_token_id, protocol.batch_size, exclude
        )
        ranks = target_ranks(beams.item_ids.numpy()[:, :k], held_out.targets)
        return ranking_metrics(ranks, [k])

    return rank


def hr_by_k_rows(metrics: dict[str, float], ks: Sequence[int]) -> list[dict[str, float]]:
    """Plot rows ``{"k", "hr", "ndcg"}`` for each K from a ``{"hr@K", "ndcg@K"}`` dict."""
    return [{"k": k, "hr": metrics[f"hr@{k}"], "ndcg": metrics[f"ndcg@{k}"]} for k in ks]
