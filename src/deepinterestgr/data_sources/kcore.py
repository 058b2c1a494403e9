"""Iterative k-core filtering of user-item interactions.

Removing a user with too few interactions can push an item below its threshold and vice
versa, so both filters repeat until nothing changes (the "5-core" of the Amazon benchmarks:
every remaining user and item has at least 5 interactions).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class KCore(NamedTuple):
    """``keep``: bool ``[M]``, which interactions survive; the rest count what was removed."""

    keep: np.ndarray
    rounds: int
    removed_users: int
    removed_items: int
    removed_interactions: int


def kcore(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> KCore:
    """Iterate until every kept user has >= ``min_user`` and every kept item >= ``min_item``.

    ``users``, ``items``: int ``[M]``, dense codes (0..U-1, 0..I-1) of each interaction.
    A threshold <= 1 disables that side's filter. Returns the surviving interactions.
    """
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(
            f"users and items must be 1-d of equal length, got {users.shape}, {items.shape}"
        )
    keep = np.ones(len(users), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        user_count = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        item_count = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new_keep = keep & (user_count[users] >= min_user) & (item_count[items] >= min_item)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return KCore(
        keep=keep,
        rounds=rounds,
        removed_users=len(np.unique(users)) - len(np.unique(users[keep])),
        removed_items=len(np.unique(items)) - len(np.unique(items[keep])),
        removed_interactions=int((~keep).sum()),
    )
