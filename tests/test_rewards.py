"""Reward terms against tables worked out by hand (METHOD.md, grpo: L = 3 levels + suffix)."""

from __future__ import annotations

import math

import pytest

from deepinterestgr.recommender.rewards import (
    TERMS,
    exact_hit,
    parse_completion,
    prefix_share,
    quality_bonus,
    rank_penalty,
    trl_reward_functions,
    valid_sid,
)

TARGET = (12, 7, 200, 0)
CATALOGUE = {(12, 7, 200, 0), (12, 7, 200, 1), (12, 7, 5, 0), (12, 3, 9, 0), (4, 7, 200, 0)}


# candidate, exact, valid, prefix (LCP/3), quality (q=0.8), rank penalty at rank 1
TABLE = [
    ((12, 7, 200, 0), 1.0, 1.0, 3 / 3, 0.8, 0.0),  # the target itself
    ((12, 7, 200, 1), 0.0, 1.0, 3 / 3, 0.0, -1 / math.log2(3)),  # only the suffix differs
    ((12, 7, 5, 0), 0.0, 1.0, 2 / 3, 0.0, -1 / math.log2(3)),
    ((12, 3, 9, 0), 0.0, 1.0, 1 / 3, 0.0, -1 / math.log2(3)),
    ((4, 7, 200, 0), 0.0, 1.0, 0 / 3, 0.0, -1 / math.log2(3)),  # later levels agree, first not
    ((12, 7, 9, 0), 0.0, 0.0, 2 / 3, 0.0, -1 / math.log2(3)),  # not an item
    (None, 0.0, 0.0, 0.0, 0.0, -1 / math.log2(3)),  # unparseable
]


@pytest.mark.parametrize(("candidate", "exact", "valid", "prefix", "quality", "rank"), TABLE)
def test_each_term_matches_the_hand_table(candidate, exact, valid, prefix, quality, rank):
    assert exact_hit(candidate, TARGET) == exact
    assert valid_sid(candidate, CATALOGUE) == valid
    assert prefix_share(candidate, TARGET, num_levels=3) == pytest.approx(prefix)
    assert quality_bonus(candidate, TARGET, quality=0.8) == pytest.approx(quality)
    assert rank_penalty(candidate, TARGET, rank=1) == pytest.approx(rank)


def test_rank_penalty_is_heaviest_for_the_top_wrong_beam():
    wrong = (4, 7, 200, 0)
    assert rank_penalty(wrong, TARGET, 0) == -1.0
    assert rank_penalty(wrong, TARGET, 6) == pytest.approx(-1 / 3)  # log2(8) = 3
    assert rank_penalty(TARGET, TARGET, 0) == 0.0


def test_trl_adapters_score_strings_column_by_column():
    functions = trl_reward_functions(CATALOGUE, num_levels=3)
    assert tuple(f.__name__ for f in functions) == TERMS
    # word-level tokenizers decode with spaces between tokens
    completions = ["<a_12><b_7><c_200><d_0>", "<a_12> <b_7> <c_5> <d_0>", "not a sid"]
    columns = {
        "prompts": ["p"] * 3,
        "completion_ids": [[1]] * 3,
        "target": ["<a_12><b_7><c_200><d_0>"] * 3,
        "quality": [0.8] * 3,
        "beam_rank": [0, 1, 2],
    }
    scores = {f.__name__: f(completions=completions, **columns) for f in functions}
    assert scores["exact"] == [1.0, 0.0, 0.0]
    assert scores["valid"] == [1.0, 1.0, 0.0]
    assert scores["prefix"] == pytest.approx([1.0, 2 / 3, 0.0])
    assert scores["quality"] == pytest.approx([0.8, 0.0, 0.0])
    assert scores["rank"] == pytest.approx([0.0, -1 / math.log2(3), -0.5])


def test_a_target_that_is_not_a_sid_is_an_error():
    exact = trl_reward_functions(CATALOGUE, num_levels=3)[0]
    with pytest.raises(ValueError, match="not a SID"):
        exact(completions=["<a_1><b_1><c_1><d_0>"], target=["oops"])


def test_completions_parse_to_codes_or_none():
    assert parse_completion(" <a_12> <b_7><c_200><d_0>\n") == (12, 7, 200, 0)
    assert parse_completion("<a_12><c_7>") is None  # a skipped level
    assert parse_completion("") is None
