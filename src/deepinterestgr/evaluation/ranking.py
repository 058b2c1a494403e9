"""Leave-one-out, full-catalogue evaluation of any ranker (METHOD.md, evaluation).

Protocol:

* ``split="valid"``: the input is the training history ``items[:-2]``, the target
  ``items[-2]``. ``split="test"``: the input is ``items[:-1]`` (training history plus the
  validation item), the target ``items[-1]``.
* Full ranking: the ranker orders the *whole* catalogue (no sampled negatives) and returns the
  best ids first; the target's 0-based position in that list is its rank.
* ``exclude_history``: when true, every item of the user's input history (for test: the
  training items and the validation item) is dropped from the ranked list before ranks are
  taken, so the list holds only unseen items. No Beauty user buys an item twice, so this only
  removes certain misses; a target that does occur in the history can then never be a hit.
  Every :class:`EvaluationResult` records the flag, because it changes the numbers (SASRec's
  HR@1 on Beauty moves about fourfold).
* Metrics: HR@K and NDCG@K of :mod:`deepinterestgr.evaluation.metrics`, averaged over users.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
from tqdm import tqdm

from deepinterestgr.common.io import UserSequence
from deepinterestgr.evaluation.metrics import ranking_metrics, target_ranks

logger = logging.getLogger(__name__)

Split = Literal["valid", "test"]
PAD = -1  # fills a ranked row that holds fewer ids than asked for


class Ranker(Protocol):
    """Anything that ranks the whole catalogue for a batch of histories."""

    def rank(self, histories: Sequence[Sequence[int]], num: int) -> np.ndarray:
        """Top ``num`` item ids per history, best first.

        ``histories``: B chronological item-id lists (oldest first). Returns int ``[B, L]``
        with ``L <= num`` (a ranker with a shorter list, e.g. beam search, returns fewer or
        pads with ``-1``); ids must be distinct within a row.
        """
        ...


class SplitExamples(NamedTuple):
    histories: list[tuple[int, ...]]  # the model's input per user
    targets: np.ndarray  # int64 [U]: the held-out item per user


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one ranker on one split, with the protocol settings that produced them."""

    split: Split
    metrics: dict[str, float]  # "hr@K" / "ndcg@K" for every K asked for
    num_users: int
    exclude_history: bool
    ranks: np.ndarray = field(repr=False, compare=False)  # int64 [U]; -1 = not in the top max(K)

    @classmethod
    def from_ranks(
        cls, split: Split, ranks: np.ndarray, ks: Sequence[int], exclude_history: bool
    ) -> EvaluationResult:
        """HR@K and NDCG@K of every K in ``ks`` from each user's target rank (int64 ``[U]``,
        0-based, -1 = not in the top ``max(ks)``): how every ranker's result is assembled."""
        return cls(
            split=split,
            metrics=ranking_metrics(ranks, ks),
            num_users=len(ranks),
            exclude_history=exclude_history,
            ranks=ranks,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (ranks left out)."""
        return {
            **self.metrics,
            "num_users": self.num_users,
            "exclude_history": self.exclude_history,
        }


def split_examples(users: Sequence[UserSequence], split: Split) -> SplitExamples:
    """Inputs and targets of the leave-one-out ``split`` (see the module docstring)."""
    if split == "valid":
        histories = [user.valid_history for user in users]
        targets = [user.valid_target for user in users]
    elif split == "test":
        histories = [user.test_history for user in users]
        targets = [user.test_target for user in users]
    else:
        raise ValueError(f"split must be 'valid' or 'test', found {split!r}")
    return SplitExamples(histories, np.asarray(targets, dtype=np.int64))


def drop_seen(ranked: np.ndarray, histories: Sequence[Sequence[int]], num: int) -> np.ndarray:
    """Remove each row's history items from its ranked list, keep the first ``num``.

    ``ranked``: int ``[B, L]``; returns int64 ``[B, num]``, padded with ``-1`` where fewer than
    ``num`` unseen ids remain. Order among the kept ids is unchanged.
    """
    kept = np.full((len(ranked), num), PAD, dtype=np.int64)
    for row, (ids, history) in enumerate(zip(ranked, histories, strict=True)):
        seen = set(history)
        unseen = [item for item in ids.tolist() if item != PAD and item not in seen][:num]
        kept[row, : len(unseen)] = unseen
    return kept


def evaluate_ranker(
    ranker: Ranker,
    users: Sequence[UserSequence],
    split: Split,
    ks: Sequence[int],
    exclude_history: bool,
    batch_size: int,
    progress: bool = True,
) -> EvaluationResult:
    """HR@K and NDCG@K of ``ranker`` on ``split`` of ``users``, full ranking.

    With ``exclude_history`` the ranker is asked for ``max(ks)`` plus the longest history of
    the batch, so that after dropping seen items (:func:`drop_seen`) ``max(ks)`` remain.
    """
    if not users:
        raise ValueError("no users to evaluate")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, found {list(ks)}")
    max_k = max(ks)
    examples = split_examples(users, split)
    ranks = np.empty(len(users), dtype=np.int64)
    starts = range(0, len(users), batch_size)
    for start in tqdm(starts, desc=f"rank {split}", unit="batch", disable=not progress):
        histories = examples.histories[start : start + batch_size]
        extra = max(len(set(h)) for h in histories) if exclude_history else 0
        ranked = np.asarray(ranker.rank(histories, max_k + extra), dtype=np.int64)
        if ranked.ndim != 2 or len(ranked) != len(histories):
            raise ValueError(f"ranker returned shape {ranked.shape} for {len(histories)} histories")
        if exclude_history:
            ranked = drop_seen(ranked, histories, max_k)
        ranks[start : start + len(histories)] = target_ranks(
            ranked[:, :max_k], examples.targets[start : start + batch_size]
        )
    result = EvaluationResult.from_ranks(split, ranks, ks, exclude_history)
    logger.info(
        "%s: %s users, exclude_history=%s, %s",
        split,
        f"{len(users):,}",
        exclude_history,
        ", ".join(f"{key} {value:.4f}" for key, value in result.metrics.items()),
    )
    return result
