"""Merge the interests that several backends mined for the same item (METHOD.md, mine).

Each backend (an LLM, the offline miner, a precomputed file) proposes an ordered list of
:class:`~deepinterestgr.common.io.Interest`. The merge, per item:

1. **normalise** every descriptor: Unicode NFKC, lowercase, whitespace collapsed, leading and
   trailing punctuation removed (inner hyphens stay: ``"salon-quality manicure at home"``);
2. **deduplicate by string**: descriptors whose :func:`dedupe_key` (all punctuation turned into
   spaces) is equal are one interest, so ``"Salon-quality manicure at home"`` and
   ``"salon quality manicure at home."`` merge;
3. **deduplicate by meaning**: greedily, strongest first, a descriptor whose sentence-embedding
   cosine similarity to an already kept one is ``>= similarity_threshold`` joins it;
4. **keep provenance**: ``models`` is the sorted union of the models that proposed any member,
   so the agreement of an interest is ``len(models)``;
5. **combine confidence**: each model's highest confidence for the merged interest, averaged
   over the models that proposed it. The mean (not the max) keeps a single over-confident
   model from dominating; agreement is rewarded by the ordering instead;
6. **order** strongest first: agreement, then confidence (descending), then descriptor text
   (ascending, only to make ties deterministic); keep the first ``max_descriptors``.

The kept descriptor text of a merged interest is the normalised text of its strongest member
(for spellings with the same key, the first one proposed, backends taken in order).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from deepinterestgr.common import io
from deepinterestgr.items.text_encoder import encode_texts

logger = logging.getLogger(__name__)

_SPACE = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+")
# Leading/trailing characters that are not letters or digits ("...", quotes, a final ".").
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


def normalise_descriptor(text: str) -> str:
    """Lowercase, NFKC, collapse whitespace, strip edge punctuation; keeps inner hyphens."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _EDGE_PUNCT.sub("", _SPACE.sub(" ", text).strip())
    return text


def dedupe_key(text: str) -> str:
    """Exact-duplicate key: the normalised text with every punctuation run turned into a space.

    ``dedupe_key("Salon-quality manicure at home") == dedupe_key("salon quality manicure
    at home.") == "salon quality manicure at home"``.
    """
    return _SPACE.sub(" ", _NON_WORD.sub(" ", normalise_descriptor(text)).replace("_", " ")).strip()


@dataclass
class _Group:
    """Descriptors merged so far: surface text and each model's best confidence."""

    descriptor: str
    best: dict[str, float]

    def add(self, model: str, confidence: float) -> None:
        self.best[model] = max(confidence, self.best.get(model, 0.0))

    def absorb(self, other: _Group) -> None:
        for model, confidence in other.best.items():
            self.add(model, confidence)

    @property
    def confidence(self) -> float:
        return sum(self.best.values()) / len(self.best)

    def strength(self) -> tuple[int, float, str]:
        """Sort key: more models first, then higher confidence, then text (deterministic)."""
        return (-len(self.best), -self.confidence, self.descriptor)

    def to_interest(self) -> io.Interest:
        return io.Interest(
            descriptor=self.descriptor,
            confidence=round(self.confidence, 6),
            models=tuple(sorted(self.best)),
        )


def _string_groups(per_backend: Sequence[Sequence[io.Interest]]) -> list[_Group]:
    """Steps 1-2: group by :func:`dedupe_key`; returns groups strongest first."""
    groups: dict[str, _Group] = {}
    for backend_index, interests in enumerate(per_backend):
        for interest in interests:
            if not interest.models:
                raise ValueError(
                    f"backend {backend_index}: interest {interest.descriptor!r} has no 'models' "
                    "(provenance is needed to count agreement)"
                )
            if not 0.0 <= interest.confidence <= 1.0:
                raise ValueError(
                    f"backend {backend_index}: interest {interest.descriptor!r} has confidence "
                    f"{interest.confidence}, expected a value in [0, 1]"
                )
            key = dedupe_key(interest.descriptor)
            if not key:
                continue  # punctuation only: nothing to keep
            group = groups.get(key)
            surface = normalise_descriptor(interest.descriptor)
            if group is None:
                group = groups[key] = _Group(surface, {})
            for model in interest.models:
                group.add(model, interest.confidence)
    # The surface text of a string group is the first spelling seen; backends come in order.
    return sorted(groups.values(), key=_Group.strength)


def _semantic_merge(
    groups: list[_Group],
    vector_of: Callable[[str], np.ndarray] | None,
    threshold: float,
    max_descriptors: int,
) -> tuple[io.Interest, ...]:
    """Steps 3-6 on string groups already sorted strongest first."""
    if len(groups) < 2:
        vector_of = None  # nothing to compare: such groups are never encoded
    kept: list[_Group] = []
    kept_vectors: list[np.ndarray] = []
    for group in groups:
        if vector_of is not None and kept:
            vector = vector_of(group.descriptor)
            similarity = np.stack(kept_vectors) @ vector
            best = int(np.argmax(similarity))
            if similarity[best] >= threshold:
                kept[best].absorb(group)
                continue
        kept.append(group)
        if vector_of is not None:
            kept_vectors.append(vector_of(group.descriptor))
    kept.sort(key=_Group.strength)
    return tuple(group.to_interest() for group in kept[:max_descriptors])


def _encode_unique(texts: Iterable[str], encoder: str, batch_size: int) -> dict[str, np.ndarray]:
    """Unit vectors for each distinct text, encoded in one sorted batch (deterministic)."""
    unique = sorted(set(texts))
    if not unique:
        return {}
    logger.info("encoding %s distinct descriptors for the merge", f"{len(unique):,}")
    vectors = encode_texts(
        unique, encoder, batch_size=batch_size, show_progress=len(unique) > 10_000
    )
    return dict(zip(unique, vectors, strict=True))


def _uses_embeddings(similarity_threshold: float) -> bool:
    # Cosine similarity never exceeds 1: a threshold above it means "string dedupe only",
    # which needs no encoder at all.
    return similarity_threshold <= 1.0


def _merge_rows(
    per_backend_rows: Sequence[Sequence[io.ItemInterests | io.UserInterests]],
    id_of: Callable[[io.ItemInterests | io.UserInterests], int],
    max_descriptors: int,
    similarity_threshold: float,
    encoder: str,
    batch_size: int,
) -> list[tuple[int, tuple[io.Interest, ...], bool]]:
    """Shared body of :func:`merge_many` and :func:`merge_many_users`."""
    by_id: dict[int, list[io.ItemInterests | io.UserInterests]] = {}
    for backend_index, rows in enumerate(per_backend_rows):
        seen: set[int] = set()
        for row in rows:
            row_id = id_of(row)
            if row_id in seen:
                raise ValueError(f"backend {backend_index}: id {row_id} appears twice")
            seen.add(row_id)
            by_id.setdefault(row_id, []).append(row)
    grouped = {
        row_id: _string_groups([row.interests for row in rows]) for row_id, rows in by_id.items()
    }
    vector_of = None
    if _uses_embeddings(similarity_threshold):
        # One batch for the whole catalogue: the encoder is the slow part, and many
        # descriptors ("nail polish", "dry skin relief") recur across items.
        vectors = _encode_unique(
            (g.descriptor for groups in grouped.values() if len(groups) > 1 for g in groups),
            encoder,
            batch_size,
        )
        vector_of = vectors.__getitem__
    merged = []
    for row_id in sorted(by_id):
        interests = _semantic_merge(
            grouped[row_id], vector_of, similarity_threshold, max_descriptors
        )
        # Offline only when no LLM contributed to the row.
        offline = all(row.offline for row in by_id[row_id])
        merged.append((row_id, interests, offline))
    return merged


def merge_many(
    per_backend_rows: Sequence[Sequence[io.ItemInterests]],
    max_descriptors: int,
    similarity_threshold: float,
    encoder: str,
    batch_size: int,
) -> list[io.ItemInterests]:
    """Merge every item's interests across backends (module docstring, steps 1-6), encoding
    the descriptors of all items in one pass.

    Args:
        per_backend_rows: ``per_backend_rows[b]`` holds backend b's rows (any order, each
            ``item_id`` at most once); an item missing from a backend simply has no proposals
            from it. Every interest must name its ``models`` (provenance) and have a
            confidence in [0, 1].
        max_descriptors: keep at most this many merged interests per item.
        similarity_threshold: cosine similarity in [-1, 1] at or above which two descriptors
            are one interest; above 1 disables the embedding step (string dedupe only).
        encoder: sentence encoder name or path (see :mod:`deepinterestgr.items.text_encoder`).
        batch_size: descriptors per encoder batch (the encoder sorts by length inside a batch).

    Returns:
        one row per item id seen, sorted by ``item_id``: interests strongest first, ``models``
        sorted, ``confidence`` in [0, 1]; ``offline`` is True only when every contributing row
        was offline.
    """
    merged = _merge_rows(
        per_backend_rows,
        lambda row: row.item_id,
        max_descriptors,
        similarity_threshold,
        encoder,
        batch_size,
    )
    return [io.ItemInterests(row_id, interests, offline) for row_id, interests, offline in merged]


def merge_many_users(
    per_backend_rows: Sequence[Sequence[io.UserInterests]],
    max_descriptors: int,
    similarity_threshold: float,
    encoder: str,
    batch_size: int,
) -> list[io.UserInterests]:
    """:func:`merge_many` for user rows (keyed by ``user_id``)."""
    merged = _merge_rows(
        per_backend_rows,
        lambda row: row.user_id,
        max_descriptors,
        similarity_threshold,
        encoder,
        batch_size,
    )
    return [io.UserInterests(row_id, interests, offline) for row_id, interests, offline in merged]
