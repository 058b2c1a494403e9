"""SID strings parse back exactly, the suffix makes SIDs unique and never counts as a prefix."""

from __future__ import annotations

import numpy as np
import pytest

from deepinterestgr.items.semantic_ids import (
    CollisionLimitExceeded,
    add_collision_suffix,
    check_capacity,
    check_collisions,
    collision_stats,
    format_sid,
    least_collision_rate,
    level_usage,
    parse_sid,
    prefix_codes,
    prefix_match_length,
    sid_diagnostics,
    token,
)


def test_format_matches_the_documented_token_format():
    assert format_sid([12, 7, 200, 0]) == "<a_12><b_7><c_200><d_0>"
    assert token(1, 7) == "<b_7>"


@pytest.mark.parametrize("num_codes", range(1, 9))
def test_parse_inverts_format_on_every_level(num_codes):
    rng = np.random.default_rng(num_codes)
    for codes in [
        [0] * num_codes,
        [1023] * num_codes,
        rng.integers(0, 300, size=num_codes).tolist(),
    ]:
        text = format_sid(codes)
        assert parse_sid(text) == tuple(codes)
        # Each level on its own is recognised at its own position and nowhere else.
        for level, code in enumerate(codes):
            assert token(level, code) in text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<b_1>",  # must start at level a
        "<a_1><c_2>",  # skipped level
        "<a_1><a_2>",  # repeated level
        "<a_01>",  # leading zero
        "<a_1> <b_2>",  # spaces
        "<A_1>",
        "<a_-1>",
        "<a_1_2>",
        "a_1",
        "<a_1><b_2>x",
        " <a_1>",
        "<a_1><b_2",
        "<a_>",
        "<a_1.5>",
        "".join(f"<{letter}_0>" for letter in "abcdefghijklmnopqrstuvwxyz") + "<a_0>",
    ],
)
def test_parse_rejects_malformed_strings(text):
    with pytest.raises(ValueError, match="not a SID"):
        parse_sid(text)


def test_format_rejects_negative_codes_and_empty_sids():
    with pytest.raises(ValueError):
        format_sid([1, -1])
    with pytest.raises(ValueError):
        format_sid([])


def test_suffix_numbers_collisions_in_item_order_and_makes_sids_unique():
    codes = np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 2, 3], [0, 0, 1]])
    with_suffix = add_collision_suffix(codes)
    assert with_suffix.dtype == np.int64
    assert with_suffix[:, :3].tolist() == codes.tolist()
    assert with_suffix[:, 3].tolist() == [0, 1, 0, 2, 0]
    assert len({format_sid(row) for row in with_suffix.tolist()}) == len(codes)


def test_collision_stats_by_hand():
    codes = np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 2, 3], [0, 0, 1]])
    stats = collision_stats(codes)
    assert stats.collision_rate == pytest.approx(3 / 5)  # items 0, 1 and 3 share their codes
    assert stats.unique_rate == pytest.approx(3 / 5)
    assert stats.largest_group == 3


def test_suffix_is_excluded_from_prefix_levels():
    assert prefix_codes((4, 5, 6, 2), num_levels=3) == (4, 5, 6)
    # Two items that differ only in the suffix match on all L levels, not L+1.
    assert prefix_match_length((4, 5, 6, 0), (4, 5, 6, 1), num_levels=3) == 3
    assert prefix_match_length((4, 5, 6, 0), (4, 5, 6, 0), num_levels=3) == 3
    assert prefix_match_length((4, 5, 7, 0), (4, 5, 6, 0), num_levels=3) == 2
    assert prefix_match_length((9, 5, 6, 0), (4, 5, 6, 0), num_levels=3) == 0


def test_level_usage_counts_and_perplexity_by_hand():
    codes = np.array([[0, 3], [1, 3], [2, 3], [3, 3]])
    first, second = level_usage(codes, codebook_size=5)
    assert first.counts.tolist() == [1, 1, 1, 1, 0]
    assert (first.codes_used, first.perplexity) == (4, pytest.approx(4.0))  # uniform over 4
    assert (second.codes_used, second.perplexity) == (1, pytest.approx(1.0))  # one code
    metrics = sid_diagnostics(codes, [first, second])
    assert metrics["levels"]["a"] == {"codes_used": 4, "perplexity": pytest.approx(4.0)}
    assert metrics["collision_rate"] == 0.0


def test_least_collision_rate_by_hand():
    # 2 codes x 3 levels = 8 tuples for 400 items: at best 7 alone, 393 share the last tuple.
    assert least_collision_rate(400, 2, 3) == pytest.approx(393 / 400)
    assert least_collision_rate(8, 2, 3) == 0.0
    assert least_collision_rate(9, 2, 3) == pytest.approx(2 / 9)


@pytest.mark.parametrize("codebook_size", [1, 2])
def test_a_codebook_too_small_fails_before_training(codebook_size):
    with pytest.raises(CollisionLimitExceeded, match=r"rqvae\.codebook_size=\d with num_levels=3"):
        check_capacity(400, codebook_size, 3, 0.5)
    check_capacity(400, 32, 3, 0.5)  # the default passes


def test_trained_codes_above_the_collision_limit_fail():
    codes = np.array([[0, 0], [0, 0], [0, 0], [1, 0]])  # 3 of 4 items share (0, 0)
    with pytest.raises(CollisionLimitExceeded, match=r"75\.0% of 4 items share their 2 RQ codes"):
        check_collisions(codes, 2, 0.5)
    check_collisions(codes, 2, 0.75)
