"""Supervised fine-tuning examples for the generative recommender (METHOD.md, sft).

Every example is token ids plus labels (``-100`` where no loss is taken). Prompts open with a
task token; an item is written as its ``L+1`` SID tokens; the recommendation prompts come from
:mod:`deepinterestgr.recommender.prompt`. Tasks:

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

from deepinterestgr.common.io import Item, ItemInterests, UserSequence
from deepinterestgr.recommender.prompt import (
    RECOMMENDATION_TASKS,
    TASKS,
    PromptSpec,
    PromptWriter,
    encode_texts,
    prompt_writer,
)

logger = logging.getLogger(__name__)

IGNORE = -100


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


@dataclass(frozen=True)
class SftEncoder:
    """Turns users and items into token-id examples; one place for the training formats.

    ``prompts`` writes the recommendation prompts; ``item_text_ids[i]`` is item i's encoded
    alignment text (an empty list where there is none).
    """

    prompts: PromptWriter
    eos_id: int
    item_text_ids: Sequence[list[int]]

    def sequence_examples(self, users: Sequence[UserSequence], task: str) -> list[SftExample]:
        """Next-SID examples over every user's training part, all prefixes per pass."""
        writer = self.prompts
        width = writer.sid_ids.shape[1]
        examples = []
        for user in users:
            items = list(user.train)
            end = len(items)
            while end >= 2:
                start = max(0, end - writer.spec.max_history - 1)
                head = writer.head(task, user.user_id)
                sids = writer.sids(items[start:end])
                # The window's first item is context only; every later item is a target.
                labels = [IGNORE] * (len(head) + width) + sids[width:]
                examples.append(SftExample(head + sids, labels))
                end = start + 1 if start > 0 else 0
        return examples

    def validation_examples(self, users: Sequence[UserSequence]) -> list[SftExample]:
        """One example per user: the inference prompt for the validation target, loss on it."""
        examples = []
        for user in users:
            prompt = self.prompts.prompt(user.user_id, user.valid_history)
            target = self.prompts.sids([user.valid_target])
            examples.append(SftExample(prompt + target, [IGNORE] * len(prompt) + target))
        return examples

    def interests_to_sid_examples(self) -> list[SftExample]:
        """Item text and interests -> the item's SID, for every item with text."""
        examples = []
        for item_id, text in enumerate(self.item_text_ids):
            if text:
                prompt = [self.prompts.task_ids["interests_to_sid"], *text, self.prompts.sep_id]
                target = self.prompts.sids([item_id])
                examples.append(SftExample(prompt + target, [IGNORE] * len(prompt) + target))
        return examples

    def sid_to_interests_examples(self) -> list[SftExample]:
        """An item's SID -> its text and interests, for every item with text."""
        examples = []
        for item_id, text in enumerate(self.item_text_ids):
            if text:
                sid = self.prompts.sids([item_id])
                prompt = [self.prompts.task_ids["sid_to_interests"], *sid, self.prompts.sep_id]
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
    if len(item_texts) != len(sid_ids):
        raise ValueError(f"{len(item_texts)} item texts for {len(sid_ids)} items")
    return SftEncoder(
        prompts=prompt_writer(tokenizer, sid_ids, spec, user_texts),
        eos_id=tokenizer.eos_token_id,
        item_text_ids=encode_texts(tokenizer, item_texts, spec.max_text_tokens),
    )


def sample_users(
    users: Sequence[UserSequence], count: int, rng: np.random.Generator
) -> list[UserSequence]:
    """``count`` users drawn without replacement, in id order (all of them when ``count`` is 0
    or at least their number)."""
    if count <= 0 or count >= len(users):
        return list(users)
    return [users[i] for i in sorted(rng.choice(len(users), size=count, replace=False))]
