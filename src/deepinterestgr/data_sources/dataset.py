"""The one in-memory form every source loads into, plus its statistics and skip accounting.

Every loader (synthetic, benchmark, Amazon 2014, Amazon 2023) ends in :func:`build_dataset`,
which turns source-id sequences and item metadata into the pipeline's integer ids:

- users get ids 0..U-1 in the order the loader lists them;
- items listed in ``catalogue`` keep that order first (ids 0..), then any further item gets the
  next id at its first appearance walking the users' sequences in order.

Every user must have at least 3 items: leave-one-out needs a test target, a validation
target and at least one training item.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from deepinterestgr.common.errors import PipelineError
from deepinterestgr.common.io import Item, UserSequence

log = logging.getLogger(__name__)

MIN_SEQUENCE_LENGTH = 3  # leave-one-out: >= 1 training item + validation + test target


class SourceError(ValueError, PipelineError):
    """Source data cannot be read or is malformed; the message names file, line and field."""


class Dataset(NamedTuple):
    """A loaded data set in the pipeline's schema.

    ``images`` maps an item's relative image path to a uint8 ``[H, W, 3]`` array that the
    stage must write (only generated sources have them; real items carry image URLs).
    ``skipped`` counts records dropped per reason (each reason's rate was checked).
    ``filtered`` counts what deliberate filters removed (k-core, short users, duplicates).
    """

    source: str
    items: tuple[Item, ...]
    users: tuple[UserSequence, ...]
    images: Mapping[str, np.ndarray]
    skipped: Mapping[str, int]
    filtered: Mapping[str, int]


@dataclass
class SkipLog:
    """Counts records skipped per reason and fails when a reason's share exceeds ``max_rate``.

    The first skip of each reason is logged with its location, so a failure message can name
    a concrete file, line and field to look at.
    """

    max_rate: float
    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        """Count one skipped record; ``where`` is e.g. ``"meta.json.gz:17: field 'asin'"``."""
        if reason not in self.counts:
            self.first[reason] = where
            log.warning("skipping %s (%s); further ones are only counted", where, reason)
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def check(self, reason: str, total: int) -> None:
        """Raise :class:`SourceError` if ``counts[reason] / total`` exceeds ``max_rate``."""
        count = self.counts.get(reason, 0)
        if count and count > self.max_rate * max(total, 1):
            raise SourceError(
                f"{self.first[reason]} ({reason}); {count:,} of {total:,} records "
                f"({count / max(total, 1):.2%}) skipped for this reason, above "
                f"download.max_skip_rate={self.max_rate}"
            )


def build_dataset(
    source: str,
    sequences: Sequence[tuple[str, Sequence[str]]],
    metadata: Mapping[str, Item],
    catalogue: Sequence[str] = (),
    images: Mapping[str, np.ndarray] | None = None,
    skipped: Mapping[str, int] | None = None,
    filtered: Mapping[str, int] | None = None,
) -> Dataset:
    """Assign integer ids and split leave-one-out.

    ``sequences``: ``(user source id, chronological item source ids)`` per user, each of
    length >= 3. ``metadata``: item source id -> :class:`Item` (its ``item_id`` is replaced).
    ``catalogue``: item source ids that get the first ids in this order (e.g. the lines of a
    benchmark's ``items.jsonl``); items only seen in sequences follow in first-appearance order.
    """
    ids: dict[str, int] = {}
    for source_id in catalogue:
        ids.setdefault(source_id, len(ids))
    users = []
    for user_id, (user_source_id, sequence) in enumerate(sequences):
        if len(sequence) < MIN_SEQUENCE_LENGTH:
            raise SourceError(
                f"user '{user_source_id}' has {len(sequence)} items, leave-one-out needs "
                f"at least {MIN_SEQUENCE_LENGTH}"
            )
        items = tuple(ids.setdefault(s, len(ids)) for s in sequence)
        users.append(UserSequence(user_id, user_source_id, items))
    missing = [s for s in ids if s not in metadata]
    if missing:
        raise SourceError(f"item '{missing[0]}' (and {len(missing) - 1} more) has no metadata")
    items = tuple(replace(metadata[s], item_id=i) for s, i in ids.items())
    return Dataset(
        source, items, tuple(users), dict(images or {}), dict(skipped or {}), dict(filtered or {})
    )


def statistics(dataset: Dataset) -> dict[str, Any]:
    """Data statistics for ``metrics/download.json`` (counts, lengths, density, split sizes)."""
    lengths = np.array([len(user.items) for user in dataset.users], dtype=np.int64)
    num_users, num_items = len(dataset.users), len(dataset.items)
    interactions = int(lengths.sum())
    used = {item for user in dataset.users for item in user.items}
    return {
        "source": dataset.source,
        "users": num_users,
        "items": num_items,
        "interactions": interactions,
        "avg_length": round(float(lengths.mean()), 4) if num_users else 0.0,
        "min_length": int(lengths.min()) if num_users else 0,
        "max_length": int(lengths.max()) if num_users else 0,
        "density": round(interactions / max(num_users * num_items, 1), 6),
        "items_without_interactions": num_items - len(used),
        "split": {
            "train_interactions": interactions - 2 * num_users,
            "valid_users": num_users,
            "test_users": num_users,
        },
        "skipped": dict(sorted(dataset.skipped.items())),
        "filtered": dict(sorted(dataset.filtered.items())),
    }


def write_images(folder: Path, images: Mapping[str, np.ndarray]) -> int:
    """Write each uint8 ``[H, W, 3]`` array as a PNG at ``folder / relative path``."""
    for relative, array in images.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array, mode="RGB").save(path, format="PNG")
    return len(images)
