"""Semantic IDs: code tuples, their token strings, the collision suffix and diagnostics.

An item's SID is L RQ-VAE codes plus one collision suffix, written as one token per level:
``<a_12><b_7><c_200><d_0>`` (levels a, b, c, ...; the last token is the suffix). Every item
carries the suffix, 0 when no other item shares its L codes, so all SIDs have the same
length L+1; that keeps decoding and the prefix tree of valid SIDs uniform.

The suffix only tells apart items that the RQ-VAE could not; it carries no meaning, so the
reward's prefix credit (METHOD.md, grpo: LCP over L levels) looks only at the first L codes
(:func:`prefix_match_length`).

SID strings are parsed by one regular expression (:data:`SID_PATTERN`); splitting on ``_``
broke per-level matching in a peer project.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from deepinterestgr.common.errors import PipelineError

LEVEL_LETTERS = string.ascii_lowercase
MAX_LEVELS = len(LEVEL_LETTERS)

# One token: a level letter and a code without leading zeros ("<b_07>" is not a token).
TOKEN_PATTERN = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>")
# A whole SID: one or more tokens and nothing else.
SID_PATTERN = re.compile(rf"(?:{TOKEN_PATTERN.pattern})+")


def token(level: int, code: int) -> str:
    """The token of ``code`` at ``level`` (0-based): ``token(1, 7) == "<b_7>"``."""
    if not 0 <= level < MAX_LEVELS:
        raise ValueError(f"level must be in [0, {MAX_LEVELS}), got {level}")
    if code < 0:
        raise ValueError(f"code must be non-negative, got {code}")
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def format_sid(codes: Sequence[int]) -> str:
    """Codes (L RQ codes then the suffix) -> ``"<a_12><b_7><c_200><d_0>"``."""
    if len(codes) == 0:
        raise ValueError("a SID needs at least one code")
    return "".join(token(level, int(code)) for level, code in enumerate(codes))


def parse_sid(text: str) -> tuple[int, ...]:
    """``"<a_12><b_7><c_200><d_0>"`` -> ``(12, 7, 200, 0)``; the inverse of :func:`format_sid`.

    Raises ``ValueError`` naming the string unless it is only tokens with letters a, b, c, ...
    in order (no spaces, no leading zeros, no skipped or repeated level).
    """
    if not SID_PATTERN.fullmatch(text):
        raise ValueError(f"not a SID: {text!r}")
    codes = []
    for level, match in enumerate(TOKEN_PATTERN.finditer(text)):
        letter, code = match.groups()
        if level >= MAX_LEVELS or letter != LEVEL_LETTERS[level]:
            raise ValueError(f"not a SID: {text!r} (token {level + 1} has level '{letter}')")
        codes.append(int(code))
    return tuple(codes)


def prefix_codes(codes: Sequence[int], num_levels: int) -> tuple[int, ...]:
    """The L RQ codes of a SID, suffix dropped: what carries meaning."""
    return tuple(codes[:num_levels])


def prefix_match_length(candidate: Sequence[int], target: Sequence[int], num_levels: int) -> int:
    """Longest common prefix of two SIDs over the L RQ levels only, in [0, L].

    The suffix never counts: two different items that differ only in the suffix match L levels.
    """
    matched = 0
    pairs = zip(prefix_codes(candidate, num_levels), prefix_codes(target, num_levels), strict=False)
    for a, b in pairs:
        if a != b:
            break
        matched += 1
    return matched


def add_collision_suffix(codes: np.ndarray) -> np.ndarray:
    """Append a suffix column to codes ``[N, L]`` -> ``[N, L+1]`` int64, unique rows.

    Items sharing all L codes get suffixes 0, 1, 2, ... in increasing item id (row) order;
    an item alone in its group gets 0.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N, L], got shape {codes.shape}")
    _, group_of = np.unique(codes, axis=0, return_inverse=True)
    group_of = group_of.reshape(-1)
    suffix = np.zeros(len(codes), dtype=np.int64)
    seen: dict[int, int] = {}
    for row, group in enumerate(group_of.tolist()):
        suffix[row] = seen.get(group, 0)
        seen[group] = suffix[row] + 1
    return np.concatenate([codes, suffix[:, None]], axis=1)


class CollisionLimitExceeded(ValueError, PipelineError):
    """More items share their L codes than ``rqvae.max_collision_rate`` allows."""


def least_collision_rate(num_items: int, codebook_size: int, num_levels: int) -> float:
    """The smallest collision rate any assignment of N items to K^L code tuples can have.

    With more items than tuples, at best K^L - 1 items are alone and the rest share the last
    tuple: (N - K^L + 1) / N. (Collision rate as in :class:`CollisionStats`.)
    """
    tuples = codebook_size**num_levels
    return 0.0 if num_items <= tuples else (num_items - tuples + 1) / num_items


def check_capacity(
    num_items: int, codebook_size: int, num_levels: int, max_collision_rate: float
) -> None:
    """Fail before training when K^L code tuples cannot give N items few enough collisions."""
    least = least_collision_rate(num_items, codebook_size, num_levels)
    if least > max_collision_rate:
        raise CollisionLimitExceeded(
            f"rqvae.codebook_size={codebook_size} with num_levels={num_levels} gives "
            f"{codebook_size**num_levels:,} code tuples for {num_items:,} items: at least "
            f"{least:.1%} of them would collide, above rqvae.max_collision_rate="
            f"{max_collision_rate} (the SIDs would be mostly suffix); raise codebook_size or "
            "num_levels"
        )


def check_collisions(codes: np.ndarray, codebook_size: int, max_collision_rate: float) -> None:
    """Fail when trained codes ``[N, L]`` collide above the limit (e.g. a collapsed codebook)."""
    stats = collision_stats(codes)
    if stats.collision_rate > max_collision_rate:
        raise CollisionLimitExceeded(
            f"{stats.collision_rate:.1%} of {len(codes):,} items share their "
            f"{codes.shape[1]} RQ codes with another item (largest group "
            f"{stats.largest_group:,}), above rqvae.max_collision_rate={max_collision_rate}; "
            f"raise rqvae.codebook_size ({codebook_size}) or num_levels, or use last_level: "
            "balanced"
        )


class CollisionStats(NamedTuple):
    """How items share their L codes before the suffix."""

    collision_rate: float  # share of items whose L codes equal another item's
    unique_rate: float  # distinct L-code tuples / N
    largest_group: int  # most items sharing one L-code tuple


def collision_stats(codes: np.ndarray) -> CollisionStats:
    """Collision diagnostics of codes ``[N, L]`` (suffix excluded)."""
    codes = np.asarray(codes)
    _, counts = np.unique(codes, axis=0, return_counts=True)
    n = len(codes)
    return CollisionStats(
        collision_rate=float(counts[counts > 1].sum() / n),
        unique_rate=float(len(counts) / n),
        largest_group=int(counts.max()),
    )


class LevelUsage(NamedTuple):
    """Use of one level's codebook by the items."""

    counts: np.ndarray  # int64 [K]: items per code
    codes_used: int  # codes chosen by at least one item
    perplexity: float  # exp(entropy) of the code distribution, in [1, codes_used]


def level_usage(codes: np.ndarray, codebook_size: int) -> list[LevelUsage]:
    """Per level of codes ``[N, L]``: counts, codes used and perplexity."""
    usages = []
    for column in np.asarray(codes).T:
        counts = np.bincount(column, minlength=codebook_size).astype(np.int64)
        share = counts[counts > 0] / counts.sum()
        perplexity = math.exp(float(-(share * np.log(share)).sum()))
        usages.append(LevelUsage(counts, int((counts > 0).sum()), perplexity))
    return usages


def sid_diagnostics(codes: np.ndarray, usages: Sequence[LevelUsage]) -> dict[str, object]:
    """Metrics of codes ``[N, L]`` before the suffix: collisions and, per level, usage.

    ``usages`` is :func:`level_usage` of the same codes. Levels are keyed by their letter.
    """
    stats = collision_stats(codes)
    return {
        "items": len(codes),
        "collision_rate": stats.collision_rate,
        "unique_rate": stats.unique_rate,
        "largest_group": stats.largest_group,
        "levels": {
            LEVEL_LETTERS[level]: {"codes_used": usage.codes_used, "perplexity": usage.perplexity}
            for level, usage in enumerate(usages)
        },
    }
