"""The Interest-Aware Reward of the ``grpo`` stage (METHOD.md, grpo), one pure term per function.

For a candidate SID ``c`` written for a user whose next item has SID ``t`` and quality
``q_t`` (``data/label/quality.npy``), the revision's reward is

    R = 1[c = t] + λ_valid·1[c is a catalogue SID] + λ_pref·LCP(c, t)/L + α·q_t·1[c = t]

plus, optionally, a rank penalty ``λ_rank·(-1/log2(r + 2))`` for a wrong candidate at beam rank
``r`` (0 = the model's top beam), which pushes probability away from confidently wrong items
(hard negatives, as in MiniOneRec's rank-aware reward). ``L`` counts the RQ levels only: the
collision suffix says nothing about the item's content, so sharing it is not partial credit.

Every term is returned unweighted; the weights (1, λ_valid, λ_pref, α, λ_rank) live in
``params.yaml`` and are applied by TRL's ``reward_weights``, so each term's mean is logged on its
own scale and any term can be switched off (weight 0) for an ablation.

A SID here is a tuple of codes, L level codes then the suffix: ``(12, 7, 200, 0)``; only the
TRL adapters see strings, and read them with :func:`parse_completion`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

from deepinterestgr.common.params import RewardWeights
from deepinterestgr.items.semantic_ids import parse_sid, prefix_match_length

SID = tuple[int, ...]

TERMS = ("exact", "valid", "prefix", "quality", "rank")


def reward_weights(weights: RewardWeights) -> list[float]:
    """TRL's ``reward_weights``: each term's weight in :data:`TERMS` order."""
    return [getattr(weights, term) for term in TERMS]


# --------------------------------------------------------------------------- pure terms


def exact_hit(candidate: SID | None, target: SID) -> float:
    """1.0 when the candidate is the target SID (suffix included), else 0.0."""
    return float(candidate is not None and tuple(candidate) == tuple(target))


def valid_sid(candidate: SID | None, catalogue: Collection[SID]) -> float:
    """1.0 when the candidate parses and names a catalogue item, else 0.0."""
    return float(candidate is not None and tuple(candidate) in catalogue)


def prefix_share(candidate: SID | None, target: SID, num_levels: int) -> float:
    """Longest common prefix over the first ``num_levels`` codes, divided by ``num_levels``.

    Range [0, 1] in steps of 1/L. The suffix (position L) is excluded, so a candidate that
    differs from the target only in its suffix scores 1.0 here and 0.0 on :func:`exact_hit`.
    """
    if num_levels < 1:
        raise ValueError(f"num_levels must be at least 1, found {num_levels}")
    if candidate is None:
        return 0.0
    return prefix_match_length(candidate, target, num_levels) / num_levels


def quality_bonus(candidate: SID | None, target: SID, quality: float) -> float:
    """The target's interest quality ``q_t`` in [0, 1], paid only on an exact hit."""
    return quality * exact_hit(candidate, target)


def rank_penalty(candidate: SID | None, target: SID, rank: int) -> float:
    """``-1/log2(rank + 2)`` for a wrong candidate at beam rank ``rank`` (0-based), 0.0 on a hit.

    The top wrong beam costs -1.0, the second -0.63, the eighth -0.30: the more the model
    believes a wrong item, the more it is pushed away from it.
    """
    if rank < 0:
        raise ValueError(f"beam rank must be non-negative, found {rank}")
    if exact_hit(candidate, target):
        return 0.0
    return -1.0 / math.log2(rank + 2)


# --------------------------------------------------------------------------- TRL adapters


def parse_completion(text: str) -> SID | None:
    """A decoded completion's SID codes, or None when it is not exactly one SID.

    Whitespace is dropped first: word-level tokenizers decode ``<a_1> <b_2>`` with spaces.
    """
    try:
        return parse_sid("".join(text.split()))
    except ValueError:
        return None


def trl_reward_functions(
    catalogue: Collection[SID],
    num_levels: int,
    parse: Callable[[str], SID | None] = parse_completion,
) -> list[Callable[..., list[float]]]:
    """The five terms as TRL reward functions, in :data:`TERMS` order.

    Each has TRL's signature ``f(completions, **columns) -> list[float]``: ``completions`` are
    the decoded candidate strings; the dataset columns ``target`` (the target SID string) and
    ``quality`` (``q_t``) and the rollout's ``beam_rank`` arrive as equal-length lists. The
    function's ``__name__`` is the term name, which TRL uses in its logged metric keys
    (``rewards/exact/mean``).
    """
    catalogue = frozenset(tuple(sid) for sid in catalogue)

    def parse_target(text: str) -> SID:
        sid = parse(text)
        if sid is None:
            raise ValueError(f"reward target {text!r} is not a SID")
        return sid

    def exact(completions: Sequence[str], target: Sequence[str], **_: Any) -> list[float]:
        return [
            exact_hit(parse(c), parse_target(t)) for c, t in zip(completions, target, strict=True)
        ]

    def valid(completions: Sequence[str], **_: Any) -> list[float]:
        return [valid_sid(parse(c), catalogue) for c in completions]

    def prefix(completions: Sequence[str], target: Sequence[str], **_: Any) -> list[float]:
        return [
            prefix_share(parse(c), parse_target(t), num_levels)
            for c, t in zip(completions, target, strict=True)
        ]

    def quality(
        completions: Sequence[str], target: Sequence[str], quality: Sequence[float], **_: Any
    ) -> list[float]:
        return [
            quality_bonus(parse(c), parse_target(t), float(q))
            for c, t, q in zip(completions, target, quality, strict=True)
        ]

    def rank(
        completions: Sequence[str], target: Sequence[str], beam_rank: Sequence[int], **_: Any
    ) -> list[float]:
        return [
            rank_penalty(parse(c), parse_target(t), int(r))
            for c, t, r in zip(completions, target, beam_rank, strict=True)
        ]

    functions = [exact, valid, prefix, quality, rank]
    assert tuple(f.__name__ for f in functions) == TERMS
    return functions
