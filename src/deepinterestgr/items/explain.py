"""Why was an item recommended? Match a user's mined interests to each recommendation's.

An explanation lists the user's history (titles), the user's deep interests (mined from the
training history only, ``data/mine/users.jsonl``) and the top-K recommended items, each with
its SID and the user interests it matches: pairs (user interest, item interest) whose
sentence embeddings have cosine similarity at least ``min_similarity``. Exact string matches
always count (similarity 1.0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from deepinterestgr.common.io import Interest, Item


@dataclass(frozen=True)
class InterestMatch:
    user_interest: str
    item_interest: str
    similarity: float  # cosine similarity in [-1, 1]; 1.0 for identical strings


@dataclass(frozen=True)
class Recommendation:
    rank: int  # 1-based position in the ranked list
    item_id: int
    title: str
    sid: str
    matches: tuple[InterestMatch, ...]  # strongest first


@dataclass(frozen=True)
class Explanation:
    user_id: int
    source_id: str
    history: tuple[tuple[int, str], ...]  # (item id, title), oldest first
    user_interests: tuple[str, ...]
    recommendations: tuple[Recommendation, ...]
    target: tuple[int, str] | None = None  # the held-out item, when explaining an evaluation


def match_interests(
    user_interests: Sequence[str],
    item_interests: Sequence[str],
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    min_similarity: float,
    max_matches: int,
) -> tuple[InterestMatch, ...]:
    """Pairs of (user interest, item interest) at least ``min_similarity`` alike.

    ``user_vectors`` [U, d] and ``item_vectors`` [I, d] are unit-normalised embeddings of the
    two lists in order. Each item interest is matched to at most one user interest (its best),
    and the ``max_matches`` strongest pairs are returned, strongest first.
    """
    if not user_interests or not item_interests:
        return ()
    similarity = item_vectors @ user_vectors.T  # [I, U]
    matches = []
    for i, item_text in enumerate(item_interests):
        exact = [u for u, user_text in enumerate(user_interests) if user_text == item_text]
        best = exact[0] if exact else int(np.argmax(similarity[i]))
        score = 1.0 if exact else float(similarity[i, best])
        if score >= min_similarity:
            matches.append(InterestMatch(user_interests[best], item_text, round(score, 4)))
    matches.sort(key=lambda m: (-m.similarity, m.item_interest))
    return tuple(matches[:max_matches])


def title_of(item: Item) -> str:
    return item.title or f"(untitled {item.source_id})"


def descriptors(interests: Sequence[Interest], positive_only: bool) -> list[str]:
    """Descriptor strings in order; with ``positive_only`` drop those labelled negative."""
    return [i.descriptor for i in interests if not positive_only or i.positive is not False]


def explanation_to_dict(explanation: Explanation) -> dict:
    return asdict(explanation)


def render_table(explanation: Explanation) -> str:
    """A plain-text report: history, interests, then one row per recommendation."""
    lines = [f"user {explanation.user_id} ({explanation.source_id})", "", "history (oldest first):"]
    lines += [f"  {item_id:>6}  {title}" for item_id, title in explanation.history]
    lines += ["", "mined interests: " + ("; ".join(explanation.user_interests) or "(none)")]
    if explanation.target is not None:
        lines.append(f"held-out next item: {explanation.target[0]}  {explanation.target[1]}")
    lines += ["", f"{'rank':>4}  {'item':>6}  {'SID':<28}  title / matched interests"]
    for rec in explanation.recommendations:
        hit = (
            "  <- held-out item"
            if explanation.target and rec.item_id == explanation.target[0]
            else ""
        )
        lines.append(f"{rec.rank:>4}  {rec.item_id:>6}  {rec.sid:<28}  {rec.title[:70]}{hit}")
        for match in rec.matches:
            lines.append(
                f"{'':>42}  ~ {match.user_interest!r} ~ {match.item_interest!r} "
                f"({match.similarity:.2f})"
            )
    return "\n".join(lines)
