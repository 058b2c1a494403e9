"""Most-popular baseline: every user gets the same list, the items bought most in training.

Counts come from the *training* interactions only (``UserSequence.train``): counting the
validation or test items would leak the targets into the ranking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepinterestgr.common.io import UserSequence


def training_counts(users: Sequence[UserSequence], num_items: int) -> np.ndarray:
    """int64 ``[num_items]``: how often each item occurs in the users' training histories."""
    counts = np.zeros(num_items, dtype=np.int64)
    for user in users:
        np.add.at(counts, np.asarray(user.train, dtype=np.int64), 1)
    return counts


class PopularityRanker:
    """Ranks the whole catalogue by training count (ties: lower item id first)."""

    def __init__(self, counts: np.ndarray) -> None:
        # A stable sort of -count keeps equal counts in id order, so the ranking is deterministic.
        self.order = np.argsort(-np.asarray(counts), kind="stable").astype(np.int64)

    def rank(self, histories: Sequence[Sequence[int]], num: int) -> np.ndarray:
        """The same top ``num`` ids for every history: int64 ``[B, min(num, N)]``."""
        return np.tile(self.order[:num], (len(histories), 1))
