"""Top-K ranking metrics for a single held-out target per user (METHOD.md, evaluation).

Protocol: every user has exactly one target item (leave-one-out). A ranker returns a list of
item ids, best first, drawn from the whole catalogue. The target's *rank* is its 0-based
position in that list, or :data:`NOT_RANKED` (-1) when the list does not contain it. Each
metric is one pure function of the ranks, averaged over users, so a table of ranks worked out
by hand checks it (tests/test_metrics.py). Keys always carry K: ``hr@10``, ``ndcg@10``.

Differences between two rankers on the same users carry a paired bootstrap interval
(:func:`paired_bootstrap`): users are resampled with replacement and both rankers keep their own
value for each drawn user, so the interval reflects only how the rankers differ per user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

NOT_RANKED = -1  # rank of a target that does not appear in the ranked list


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each row's target in its ranked list.

    ``ranked``: int ``[B, L]`` item ids, best first (``-1`` may pad short lists; an id should
    appear at most once per row). ``targets``: int ``[B]``. Returns int64 ``[B]`` with values in
    ``0..L-1``, or :data:`NOT_RANKED` where the target is absent from the row.
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2 or targets.shape != (ranked.shape[0],):
        raise ValueError(
            f"expected ranked [B, L] and targets [B], found {ranked.shape} and {targets.shape}"
        )
    hits = ranked == targets[:, None]
    # argmax finds the first hit; rows without any hit would also give 0, hence the mask.
    return np.where(hits.any(axis=1), hits.argmax(axis=1), NOT_RANKED).astype(np.int64)


def user_hits(ranks: np.ndarray, k: int) -> np.ndarray:
    """float64 ``[U]``: 1 where the user's target is in the top K (``0 <= rank < K``), else 0."""
    ranks = _check(ranks, k)
    return ((ranks >= 0) & (ranks < k)).astype(np.float64)


def user_ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """float64 ``[U]``: ``1/log2(rank + 2)`` where ``0 <= rank < K``, else 0 (one relevant item)."""
    ranks = _check(ranks, k)
    inside = (ranks >= 0) & (ranks < k)
    gains = np.zeros(len(ranks), dtype=np.float64)
    gains[inside] = 1.0 / np.log2(ranks[inside] + 2.0)
    return gains


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@K = (1/U) * sum_u 1[0 <= rank_u < K]: the share of users whose target is in the top K.

    ``ranks``: int ``[U]`` as from :func:`target_ranks`. Returns a value in [0, 1].
    """
    return float(user_hits(ranks, k).mean())


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@K = (1/U) * sum_u 1[0 <= rank_u < K] / log2(rank_u + 2).

    With a single relevant item the ideal DCG is 1 (target at rank 0), so NDCG is the
    discounted gain of the target alone: 1 at rank 0, 1/log2(3) ~ 0.631 at rank 1, 0.5 at
    rank 2, 0 outside the top K. ``ranks``: int ``[U]``. Returns a value in [0, 1].
    """
    return float(user_ndcg(ranks, k).mean())


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """``{"hr@K": ..., "ndcg@K": ...}`` for every K in ``ks`` (in the order given)."""
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"hr@{k}"] = hit_rate(ranks, k)
        metrics[f"ndcg@{k}"] = ndcg(ranks, k)
    return metrics


class BootstrapInterval(NamedTuple):
    difference: float  # mean(a) - mean(b) over all users
    low: float  # lower end of the percentile interval of the resampled differences
    high: float  # upper end
    confidence: float  # e.g. 0.95
    resamples: int


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int, confidence: float, seed: int
) -> BootstrapInterval:
    """Percentile bootstrap interval of ``mean(a) - mean(b)`` over users, paired.

    ``a``, ``b``: float ``[U]``, each user's value under two rankers (e.g. :func:`user_ndcg`).
    Each of ``resamples`` draws takes U users with replacement and the mean of ``a - b`` over
    them; the interval holds the central ``confidence`` share of those means. The difference
    is significant at that level when the interval excludes 0.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"expected two non-empty vectors [U] of one length, found {a.shape}, {b.shape}"
        )
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(
            f"need resamples >= 1 and 0 < confidence < 1, found {resamples} and {confidence}"
        )
    differences = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // len(differences))  # bounds the [chunk, U] index matrix
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        drawn = rng.integers(0, len(differences), size=(rows, len(differences)))
        means[start : start + rows] = differences[drawn].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return BootstrapInterval(
        float(differences.mean()), float(low), float(high), confidence, resamples
    )


def _check(ranks: np.ndarray, k: int) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or len(ranks) == 0:
        raise ValueError(f"expected a non-empty rank vector [U], found shape {ranks.shape}")
    if k < 1:
        raise ValueError(f"K must be at least 1, found {k}")
    if (ranks < NOT_RANKED).any():
        raise ValueError(f"ranks must be >= 0 or {NOT_RANKED} (not ranked), found {ranks.min()}")
    return ranks
