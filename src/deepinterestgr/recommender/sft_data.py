"""Supervised fine-tuning examples for the generative recommender (METHOD.md, sft).

Every example is token ids plus labels (``-100`` where no loss is taken). Prompts open with a
task token; an item is written as its ``L+1`` SID tokens. Tasks:

``history``            ``<task_history> s1 s2 ... sn``: loss on the SIDs of s2..sn. One causal
                       pass trains every prefix of the training sequence at once (TIGER's
                       prefix augmentation without repeating the prefix per target).
``interests_history``  ``<task_interests_history> user interest words <sep> s1 ... sn``: the
                       same, conditioned on the user's mined interests.
``interests_to_sid``   ``<task_interests_to_sid> item text and interests <sep> sid``: loss on sid.
``sid_to_interests``   ``<task_sid_to_interests> sid <sep> item text and interests <eos>``.

Only the training part of each sequence is used (``UserSequence.train``); the validation
target appears only in :meth:`SftEncoder.validation_examples` (early stopping), the test target
nowhere. Sequences longer than ``max_history + 1`` items are cut into windows that each predict
a disjoint run of targets, so every training target is learned once per epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from transformers import PreTrainedTokenizerBase

from deepinterestgr.common.io import Item, ItemInterests, UserInterests, UserSequence
from deepinterestgr.recommender.generative_model import PromptSpec
from deepinterestgr.recommender.sid_tokenizer import TASK_TOKENS

logger = logging.getLogger(__name__)

IGNORE = -100
TASKS = tuple(TASK_TOKENS)
RECOMMENDATION_TASKS = ("history", "interests_history")


class SftExample(NamedTuple):
    input_ids: list[int]
    labels: list[int]  # same length as input_ids; IGNORE where no loss is taken


def item_text(item: Item | None, interests: ItemInterests | None, use_title: bool) -> str:
    """An item's alignment text: title (optional), then its interests strongest first.

    Interests labelled negative (``positive is False``) are left out; unlabelled ones are kept.
    """
    parts = []
    if use_title and item is not None and item.title:
        parts.append(item.title)
    if interests is not None:
        parts.extend(i.descriptor for i in interests.interests if i.positive is not False)
    return "; ".join(parts)


def user_text(interests: UserInterests | None) -> str:
    """A user's mined interests (from the training history only), strongest first."""
    if interests is None:
        return ""
    return "; ".join(i.descriptor for i in interests.interests if i.positive is not False)


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int
) -> list[list[int]]:
    """Token ids of each text without special tokens, cut to ``max_tokens``."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [ids[:max_tokens] for ids in encoded]


@dataclass(frozen=True)
class SftEncoder:
    """Turns users and items into token-id examples and prompts; one place for the formats.

    ``sid_ids`` int64 ``[N, L+1]``: token ids of item i's SID in row i. ``item_text_ids[i]``
    and ``user_text_ids[u]`` are encoded texts (empty lists where there is none).
    """

    sid_ids: np.ndarray
    task_ids: Mapping[str, int]
    sep_id: int
    eos_id: int
    spec: PromptSpec
    item_text_ids: Sequence[list[int]]
    user_text_ids: Sequence[list[int]]

    def _sids(self, items: Sequence[int]) -> list[int]:
        return self.sid_ids[np.asarray(items, dtype=np.int64)].reshape(-1).tolist()

    def _head(self, task: str, user_id: int) -> list[int]:
        if task == "history":
            return [self.task_ids[task]]
        if task == "interests_history":
            return [self.task_ids[task], *self.user_text_ids[user_id], self.sep_id]
        raise ValueError(f"'{task}' is not a recommendation task ({RECOMMENDATION_TASKS})")

    def prompt(self, user_id: int, history: Sequence[int]) -> list[int]:
        """The inference prompt: the last ``max_history`` items of ``history``; the model
        continues with the next item's SID."""
        recent = list(history)[-self.spec.max_history :] if self.spec.max_history else []
        return self._head(self.spec.task, user_id) + self._sids(recent)

    def sequence_examples(self, users: Sequence[UserSequence], task: str) -> list[SftExample]:
        """Next-SID examples over every user's training part, all prefixes per pass."""
        width = self.sid_ids.shape[1]
        examples = []
        for user in users:
            items = list(user.train)
            end = len(items)
            while end >= 2:
                start = max(0, end - self.spec.max_history - 1)
                head = self._head(task, user.user_id)
                sids = self._sids(items[start:end])
                # The window's first item is context only; every later item is a target.
                labels = [IGNORE] * (len(head) + width) + sids[width:]
                examples.append(SftExample(head + sids, labels))
                end = start + 1 if start > 0 else 0
        return examples

    def validation_examples(self, users: Sequence[UserSequence]) -> list[SftExample]:
        """One example per user: the inference prompt for the validation target, loss on it."""
        examples = []
        for user in users:
            prompt = self.prompt(user.user_id, user.valid_history)
            target = self._sids([user.valid_target])
            examples.append(SftExample(prompt + target, [IGNORE] * len(prompt) + target))
        return examples

    def interests_to_sid_examples(self) -> list[SftExample]:
        """Item text and interests -> the item's SID, for every item with text."""
        examples = []
        for item_id, text in enumerate(self.item_text_ids):
            if text:
                prompt = [self.task_ids["interests_to_sid"], *text, self.sep_id]
                target = self._sids([item_id])
                examples.append(SftExample(prompt + target, [IGNORE] * len(prompt) + target))
        return examples

    def sid_to_interests_examples(self) -> list[SftExample]:
        """An item's SID -> its text and interests, for every item with text."""
        examples = []
        for item_id, text in enumerate(self.item_text_ids):
            if text:
                prompt = [self.task_ids["sid_to_interests"], *self._sids([item_id]), self.sep_id]
                target = [*text, self.eos_id]
                examples.append(SftExample(prompt + target, [IGNORE] * len(prompt) + target))
        return examples

    def task_examples(self, users: Sequence[UserSequence], task: str) -> list[SftExample]:
        if task in RECOMMENDATION_TASKS:
            return self.sequence_examples(users, task)
        if task == "interests_to_sid":
            return self.interests_to_sid_examples()
        if task == "sid_to_interests":
            return self.sid_to_interests_examples()
        raise ValueError(f"unknown task '{task}' (known: {', '.join(TASKS)})")


def mix_tasks(
    examples: Mapping[str, list[SftExample]], weights: Mapping[str, float], rng: np.random.Generator
) -> list[SftExample]:
    """The training mixture: task t contributes ``weights[t]`` times its examples per epoch.

    A weight of 2.5 repeats every example twice and samples half of them once more; 0 drops
    the task. Sampling uses ``rng``, so the mixture is fixed by the seed.
    """
    mixture: list[SftExample] = []
    for task, rows in examples.items():
        weight = weights.get(task, 0.0)
        if weight < 0:
            raise ValueError(f"task weight of '{task}' must be >= 0, found {weight}")
        whole, fraction = int(weight), weight - int(weight)
        chosen = list(rows) * whole
        if fraction > 0 and rows:
            picks = rng.choice(len(rows), size=round(fraction * len(rows)), replace=False)
            chosen += [rows[i] for i in sorted(picks)]
        logger.info("task %s: %s examples (weight %.2f)", task, f"{len(chosen):,}", weight)
        mixture.extend(chosen)
    return mixture


def build_encoder(
    tokenizer: PreTrainedTokenizerBase,
    sid_ids: np.ndarray,
    spec: PromptSpec,
    item_texts: Sequence[str],
    user_texts: Sequence[str],
) -> SftEncoder:
    """An :class:`SftEncoder` with every item and user text encoded once.

    ``sid_ids`` int64 ``[N, L+1]`` from
    :func:`deepinterestgr.recommender.sid_tokenizer.sid_token_ids`.
    """
    if spec.max_history < 1:
        raise ValueError(f"max_history must be >= 1, found {spec.max_history}")
    if len(item_texts) != len(sid_ids):
        raise ValueError(f"{len(item_texts)} item texts for {len(sid_ids)} items")
    task_ids = dict(
        zip(TASKS, tokenizer.convert_tokens_to_ids(list(TASK_TOKENS.values())), strict=True)
    )
    return SftEncoder(
        sid_ids=sid_ids,
        task_ids=task_ids,
        sep_id=tokenizer.sep_token_id,
        eos_id=tokenizer.eos_token_id,
        spec=spec,
        item_text_ids=encode_texts(tokenizer, item_texts, spec.max_text_tokens),
        user_text_ids=encode_texts(tokenizer, user_texts, spec.max_text_tokens),
    )


def sample_users(
    users: Sequence[UserSequence], count: int, rng: np.random.Generator
) -> list[UserSequence]:
    """``count`` users drawn without replacement, in id order (all of them when ``count`` is 0
    or at least their number)."""
    if count <= 0 or count >= len(users):
        return list(users)
    return [users[i] for i in sorted(rng.choice(len(users), size=count, replace=False))]
