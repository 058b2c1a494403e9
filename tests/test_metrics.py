"""HR@K and NDCG@K against tables worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepinterestgr.evaluation.metrics import (
    NOT_RANKED,
    hit_rate,
    ndcg,
    paired_bootstrap,
    ranking_metrics,
    target_ranks,
    user_hits,
    user_ndcg,
)

# Four users whose targets sit at ranks 0, 2 and 5, and one whose target is absent.
RANKS = np.array([0, 2, 5, NOT_RANKED])
# Gains 1/log2(rank + 2): rank 0 -> 1, rank 2 -> 1/log2(4) = 0.5, rank 5 -> 1/log2(7) = 0.356207.
GAIN_RANK_5 = 1 / math.log2(7)


@pytest.mark.parametrize(
    ("k", "expected_hr", "expected_ndcg"),
    [
        (1, 1 / 4, 1 / 4),  # only rank 0 counts: HR 1/4, NDCG (1)/4
        (3, 2 / 4, (1 + 0.5) / 4),  # ranks 0 and 2: HR 2/4, NDCG 1.5/4 = 0.375
        (5, 2 / 4, (1 + 0.5) / 4),  # rank 5 is the 6th place: still outside the top 5
        (6, 3 / 4, (1 + 0.5 + GAIN_RANK_5) / 4),  # 1.856207/4 = 0.464052
        (20, 3 / 4, (1 + 0.5 + GAIN_RANK_5) / 4),  # the absent target never counts
    ],
)
def test_metrics_match_the_hand_worked_table(k, expected_hr, expected_ndcg):
    assert hit_rate(RANKS, k) == pytest.approx(expected_hr)
    assert ndcg(RANKS, k) == pytest.approx(expected_ndcg)


def test_ndcg_of_rank_one_is_one_over_log2_of_three():
    assert ndcg(np.array([1]), 2) == pytest.approx(0.6309298)


def test_ranking_metrics_keys_carry_k_in_order():
    metrics = ranking_metrics(RANKS, (1, 3))
    assert list(metrics) == ["hr@1", "ndcg@1", "hr@3", "ndcg@3"]
    assert metrics["ndcg@3"] == pytest.approx(0.375)


def test_target_ranks_finds_positions_and_marks_absent_targets():
    ranked = np.array([[3, 1, 2], [5, 6, 7], [9, 8, -1]])
    targets = np.array([2, 4, 8])
    # 2 is third in row 0, 4 is not in row 1, 8 is second in row 2.
    np.testing.assert_array_equal(target_ranks(ranked, targets), [2, NOT_RANKED, 1])


@pytest.mark.parametrize(
    ("ranks", "k", "message"),
    [
        (np.array([], dtype=int), 1, "non-empty"),
        (np.array([0, 1]), 0, "K must be at least 1"),
        (np.array([0, -2]), 1, "ranks must be >= 0"),
    ],
)
def test_bad_input_is_rejected(ranks, k, message):
    with pytest.raises(ValueError, match=message):
        hit_rate(ranks, k)


def test_per_user_values_average_to_the_metrics():
    np.testing.assert_allclose(user_hits(RANKS, 6), [1, 1, 1, 0])
    np.testing.assert_allclose(user_ndcg(RANKS, 3), [1, 0.5, 0, 0])


def test_paired_bootstrap_of_a_constant_difference_is_that_difference():
    # Every user gains exactly 0.25: every resample's mean difference is 0.25.
    a, b = np.array([0.5, 1.0, 0.25]), np.array([0.25, 0.75, 0.0])
    interval = paired_bootstrap(a, b, resamples=200, confidence=0.95, seed=0)
    assert interval.difference == pytest.approx(0.25)
    assert interval.low == pytest.approx(0.25)
    assert interval.high == pytest.approx(0.25)


def test_paired_bootstrap_of_two_users_matches_the_hand_worked_distribution():
    # Differences [1, 0]: a resample of two users has mean 0 (p = 1/4), 0.5 (p = 1/2) or
    # 1 (p = 1/4). The central 95 % therefore spans [0, 1]; the central 40 % (quantiles 0.3
    # and 0.7) lies inside the middle mass at 0.5.
    a, b = np.array([1.0, 0.0]), np.array([0.0, 0.0])
    wide = paired_bootstrap(a, b, resamples=20_000, confidence=0.95, seed=1)
    narrow = paired_bootstrap(a, b, resamples=20_000, confidence=0.4, seed=1)
    assert (wide.difference, wide.low, wide.high) == (0.5, 0.0, 1.0)
    assert (narrow.low, narrow.high) == (0.5, 0.5)


def test_paired_bootstrap_rejects_unpaired_input():
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(np.zeros(3), np.zeros(4), resamples=10, confidence=0.95, seed=0)
