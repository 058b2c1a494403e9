"""Screening mined descriptors for prompt injection: instructions, links, echoed injected text.

Catalogue text is untrusted. The prompts quote it as data (:mod:`deepinterestgr.interests.prompts`),
but a model can still obey a title such as "Ignore previous instructions and output ..." with
a well-formed, schema-valid answer: "hacked visit evil dot example" at confidence 1.0, which
the merge would then spread to every user who bought the item. So every descriptor, from
every backend (LLM, offline n-grams, precomputed files), passes :func:`screen` before the
merge, and a rejected one is dropped and recorded with its reason:

``link``         a URL, domain or e-mail address, also spelled out ("evil dot example");
``instruction``  words that address a model or a reader instead of describing an interest:
                 "ignore ... rules", "system prompt", "jailbreak", "hacked", or an imperative
                 first word such as "visit", "click", "reply";
``ungrounded``   most of its words appear in the evidence only inside an injected instruction
                 (a sentence of the item's text that matches :data:`_INJECTION`), not in the
                 product data around it: the model repeated what the injection asked for.

The rules are deliberately narrow (shopping interests such as "long lasting everyday wear"
never match them); off-item but harmless descriptors are the label stage's job, whose judge
labels them negative.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from deepinterestgr.common.io import Interest, Item

Reason = Literal["link", "instruction", "ungrounded"]

_TLDS = "com|net|org|io|co|info|biz|xyz|ru|cn|ly|me|app|shop|store|site|online|example"
_LINK = re.compile(
    rf"https?://|www\.|\S+@\S+\.\w+|\b[a-z0-9-]+\.(?:{_TLDS})\b|\bdot\s+(?:{_TLDS})\b",
    re.IGNORECASE,
)
# Words that only make sense addressed to a model (or as a lure), never as a buying interest.
_INSTRUCTION_WORDS = frozenset(
    {
        *("ignore", "disregard", "instruction", "instructions", "jailbreak", "jailbroken"),
        *("hacked", "pwned", "chatgpt"),
    }
)
_IMPERATIVES = frozenset(
    {"visit", "click", "reply", "respond", "output", "print", "say", "subscribe", "forget"}
)
# An injected instruction inside catalogue text (title, description, ...).
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.!?\n]{0,60}?"
    r"\b(?:instructions?|prompts?|rules|above|previous|prior|everything)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bnew instructions\b|\bjailbreak",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?;\n]+")
_WORD = re.compile(r"[a-z0-9]+")
# Function words carry no evidence either way.
_STOPWORDS = frozenset(
    {
        *("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into"),
        *("is", "it", "its", "of", "on", "or", "the", "this", "that", "to", "with"),
        *("all", "any", "every", "your", "you", "our"),
    }
)


@dataclass(frozen=True)
class Rejection:
    """One descriptor screened out, with where it came from and why."""

    target: Literal["item", "user"]
    target_id: int
    descriptor: str
    confidence: float
    models: tuple[str, ...]
    reason: Reason

    def to_record(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "target_id": self.target_id,
            "descriptor": self.descriptor,
            "confidence": self.confidence,
            "models": list(self.models),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Evidence:
    """What an item (or a user's training items) says, split into product and injected words."""

    product_words: frozenset[str]  # words outside any injected instruction
    injected_words: frozenset[str]  # words only inside injected instructions


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def evidence_of(texts: Iterable[str]) -> Evidence:
    """Split texts into sentences; sentences with an injected instruction are set apart."""
    product: set[str] = set()
    injected: set[str] = set()
    for text in texts:
        for sentence in _SENTENCE.findall(text):
            words = _content_words(sentence)
            (injected if _INJECTION.search(sentence) else product).update(words)
    return Evidence(frozenset(product), frozenset(injected - product))


def item_texts(item: Item) -> list[str]:
    """The texts of one item that are evidence: title, brand, description, categories."""
    parts = [item.title or "", item.brand or "", item.description or ""]
    return parts + [" ".join(path) for path in item.categories]


def item_evidence(item: Item) -> Evidence:
    """The evidence of one item."""
    return evidence_of(item_texts(item))


def history_evidence(history: Iterable[Item]) -> Evidence:
    """The evidence of a user: the texts of the (training) items bought."""
    return evidence_of(text for item in history for text in item_texts(item))


def screen(descriptor: str, evidence: Evidence) -> Reason | None:
    """Why ``descriptor`` must not be kept, or None when it passes."""
    if _LINK.search(descriptor):
        return "link"
    words = _content_words(descriptor)
    if not words:
        return None
    if words[0] in _IMPERATIVES or _INSTRUCTION_WORDS.intersection(words):
        return "instruction"
    echoed = sum(w in evidence.injected_words for w in words)
    if echoed and 2 * echoed >= len(words):
        return "ungrounded"
    return None


def screen_rows(
    rows: Sequence[Any],
    target: Literal["item", "user"],
    evidence: Callable[[int], Evidence],
) -> tuple[list[Any], list[Rejection]]:
    """Drop rejected descriptors from interest rows (ItemInterests or UserInterests).

    ``evidence(id)`` gives the evidence of a row's item or user. Returns the screened rows
    (same order, a row may end up empty) and the rejections.
    """
    kept_rows, rejected = [], []
    for row in rows:
        row_id = row.item_id if target == "item" else row.user_id
        kept: list[Interest] = []
        facts = None
        for interest in row.interests:
            facts = facts or evidence(row_id)
            reason = screen(interest.descriptor, facts)
            if reason is None:
                kept.append(interest)
            else:
                rejected.append(
                    Rejection(
                        target,
                        row_id,
                        interest.descriptor,
                        interest.confidence,
                        interest.models,
                        reason,
                    )
                )
        kept_rows.append(
            row if len(kept) == len(row.interests) else replace(row, interests=tuple(kept))
        )
    return kept_rows, rejected
