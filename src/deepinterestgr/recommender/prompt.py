"""The recommender's prompt, in one place (METHOD.md, sft): its task tokens, the settings a model
is trained and then asked with (:class:`PromptSpec`), the user text it may carry, and the one
writer of its token ids (:class:`PromptWriter`).

A recommendation prompt opens with its task token; an item is its ``L+1`` SID tokens::

    history            <task_history> s1 s2 ... sn
    interests_history  <task_interests_history> user interest words <sep> s1 ... sn

and the model continues with the next item's SID. The alignment tasks of
:mod:`deepinterestgr.recommender.sft_data` open with their own task tokens. ``sft`` saves the
:class:`PromptSpec` beside the model (``recommender.json``), so ``grpo`` and ``evaluate`` write
exactly the prompts the model was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from deepinterestgr.common.io import UserInterests, UserSequence

# One task token opens every prompt; it also tells the model which task it is doing. The order
# is the tokenizer's vocabulary order (sid_tokenizer.build_tokenizer): changing it renumbers tokens.
TASK_TOKENS = {
    "history": "<task_history>",
    "interests_to_sid": "<task_interests_to_sid>",
    "sid_to_interests": "<task_sid_to_interests>",
    "interests_history": "<task_interests_history>",
}
TASKS = tuple(TASK_TOKENS)
RECOMMENDATION_TASKS = ("history", "interests_history")


@dataclass(frozen=True)
class PromptSpec:
    """How a recommendation prompt is written; saved with the model, repeated at inference."""

    task: str  # "history" or "interests_history"
    max_history: int  # most recent history items in a prompt
    max_text_tokens: int  # interest-text tokens kept per prompt

    @property
    def reads_user_text(self) -> bool:
        """Whether the prompt carries the user's mined interests."""
        return self.task == "interests_history"


def user_text(interests: UserInterests | None) -> str:
    """A user's mined interests (from the training history only), strongest first; interests
    labelled negative are left out."""
    if interests is None:
        return ""
    return "; ".join(i.descriptor for i in interests.interests if i.positive is not False)


def user_texts(users: Sequence[UserSequence], interests: Iterable[UserInterests]) -> list[str]:
    """Every user's prompt text, in ``users`` order (user ids are positions): its mined
    interests, or ``""`` for a user without a row in ``interests``."""
    by_user = {row.user_id: row for row in interests}
    return [user_text(by_user.get(user.user_id)) for user in users]


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int
) -> list[list[int]]:
    """Token ids of each text without special tokens, cut to ``max_tokens``."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [ids[:max_tokens] for ids in encoded]


@dataclass(frozen=True)
class PromptWriter:
    """Writes prompts as token ids. ``sid_ids`` int64 ``[N, L+1]``: token ids of item i's SID in
    row i; ``user_text_ids[u]``: user u's encoded interest text (empty where there is none)."""

    sid_ids: np.ndarray
    task_ids: Mapping[str, int]
    sep_id: int
    spec: PromptSpec
    user_text_ids: Sequence[list[int]]

    def sids(self, items: Sequence[int]) -> list[int]:
        """The SID tokens of ``items``, one item after another."""
        return self.sid_ids[np.asarray(items, dtype=np.int64)].reshape(-1).tolist()

    def head(self, task: str, user_id: int) -> list[int]:
        """What comes before the history items in a prompt of recommendation task ``task``."""
        if task == "history":
            return [self.task_ids[task]]
        if task == "interests_history":
            return [self.task_ids[task], *self.user_text_ids[user_id], self.sep_id]
        raise ValueError(f"'{task}' is not a recommendation task ({RECOMMENDATION_TASKS})")

    def prompt(self, user_id: int, history: Sequence[int]) -> list[int]:
        """The inference prompt: the last ``max_history`` items of ``history``; the model
        continues with the next item's SID."""
        recent = list(history)[-self.spec.max_history :] if self.spec.max_history else []
        return self.head(self.spec.task, user_id) + self.sids(recent)


def prompt_writer(
    tokenizer: PreTrainedTokenizerBase,
    sid_ids: np.ndarray,
    spec: PromptSpec,
    user_texts: Sequence[str] | None,
) -> PromptWriter:
    """A :class:`PromptWriter` with every user text encoded once. ``user_texts`` per user id, or
    None when ``spec`` reads no user text. ``sid_ids`` int64 ``[N, L+1]`` from
    :func:`deepinterestgr.recommender.sid_tokenizer.sid_token_ids`."""
    if spec.max_history < 1:
        raise ValueError(f"max_history must be >= 1, found {spec.max_history}")
    if user_texts is None and spec.reads_user_text:
        raise ValueError(f"prompt task '{spec.task}' needs user interest texts")
    task_ids = dict(
        zip(TASKS, tokenizer.convert_tokens_to_ids(list(TASK_TOKENS.values())), strict=True)
    )
    return PromptWriter(
        sid_ids=sid_ids,
        task_ids=task_ids,
        sep_id=tokenizer.sep_token_id,
        spec=spec,
        user_text_ids=encode_texts(tokenizer, user_texts or [], spec.max_text_tokens),
    )
