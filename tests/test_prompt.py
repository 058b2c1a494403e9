"""The recommender's prompt: user texts from mined interests, prompts written by hand-checked
token ids, and a prompt that needs user texts refuses to be written without them."""

from __future__ import annotations

import numpy as np
import pytest

from deepinterestgr.common.io import Interest, UserInterests, UserSequence
from deepinterestgr.recommender.prompt import (
    TASK_TOKENS,
    PromptSpec,
    prompt_writer,
    user_text,
    user_texts,
)
from deepinterestgr.recommender.sid_tokenizer import build_tokenizer, level_sizes_of, sid_token_ids

CODES = np.array([[a, b] for a in range(2) for b in range(2)], dtype=np.int64)  # 4 items


def rows() -> list[UserInterests]:
    return [
        UserInterests(
            1,
            (
                Interest("salon manicure", 0.9, positive=True),
                Interest("generic", 0.5, positive=False),
                Interest("gift idea", 0.4),
            ),
        )
    ]


def test_user_texts_keep_positive_and_unlabelled_interests_in_user_order():
    users = [UserSequence(u, f"u{u}", (0, 1, 2)) for u in range(3)]
    assert user_text(None) == ""
    assert user_texts(users, rows()) == ["", "salon manicure; gift idea", ""]


def test_prompts_open_with_the_task_token_and_keep_the_latest_items():
    tokenizer = build_tokenizer(level_sizes_of(CODES), ["salon manicure"], 10, 1)
    sid_ids = sid_token_ids(tokenizer, CODES)
    token = tokenizer.convert_tokens_to_ids
    history = prompt_writer(tokenizer, sid_ids, PromptSpec("history", 2, 8), None)
    # The last two of items 0, 3, 1: item 3 is <a_1><b_1>, item 1 is <a_0><b_1>.
    assert history.prompt(0, (0, 3, 1)) == [
        token(TASK_TOKENS["history"]), token("<a_1>"), token("<b_1>"), token("<a_0>"),
        token("<b_1>"),
    ]  # fmt: skip

    spec = PromptSpec("interests_history", 1, 1)
    texts = user_texts([UserSequence(u, f"u{u}", (0, 1, 2)) for u in range(2)], rows())
    writer = prompt_writer(tokenizer, sid_ids, spec, texts)
    # max_text_tokens 1: "salon manicure; gift idea" keeps "salon".
    assert writer.prompt(1, (2,)) == [
        token(TASK_TOKENS["interests_history"]), token("salon"), tokenizer.sep_token_id,
        token("<a_1>"), token("<b_0>"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="needs user interest texts"):
        prompt_writer(tokenizer, sid_ids, spec, None)
