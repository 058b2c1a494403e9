"""Leave-one-out evaluation with a hand-built ranker, history exclusion on and off."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from deepinterestgr.common.io import UserSequence
from deepinterestgr.evaluation.ranking import drop_seen, evaluate_ranker, split_examples

# Six items; the ranker always answers 0, 1, 2, 3, 4, 5 (best first).
USERS = [
    UserSequence(0, "u0", (0, 1, 2, 3)),  # train (0, 1), valid 2, test 3
    UserSequence(1, "u1", (4, 0, 5, 1)),  # train (4, 0), valid 5, test 1
    UserSequence(2, "u2", (1, 2, 0)),  # train (1,), valid 2, test 0
    UserSequence(3, "u3", (3, 5, 4)),  # train (3,), valid 5, test 4
]
LOG2_3 = 1 / np.log2(3)  # gain of rank 1


class FixedOrderRanker:
    """Ranks the catalogue 0..N-1 for everyone; remembers how many ids it was asked for."""

    def __init__(self, num_items: int) -> None:
        self.num_items = num_items
        self.asked: list[int] = []

    def rank(self, histories: Sequence[Sequence[int]], num: int) -> np.ndarray:
        self.asked.append(num)
        return np.tile(np.arange(min(num, self.num_items)), (len(histories), 1))


# Ranks worked by hand from the ranking 0..5:
# valid, all items:     u0 2->2, u1 5->5, u2 2->2, u3 5->5
# valid, unseen only:   u0 [2,3,4,5]->0, u1 [1,2,3,5]->3, u2 [0,2,3,4,5]->1, u3 [0,1,2,4,5]->4
# test, all items:      u0 3->3, u1 1->1, u2 0->0, u3 4->4
# test, unseen only (train + valid dropped):
#                       u0 [3,4,5]->0, u1 [1,2,3]->0, u2 [0,3,4,5]->0, u3 [0,1,2,4]->3
@pytest.mark.parametrize(
    ("split", "exclude", "ranks", "expected"),
    [
        ("valid", False, [2, 5, 2, 5], {"hr@1": 0, "ndcg@1": 0, "hr@3": 2 / 4, "ndcg@3": 1 / 4}),
        (
            "valid",
            True,
            [0, 3, 1, 4],
            {"hr@1": 1 / 4, "ndcg@1": 1 / 4, "hr@3": 2 / 4, "ndcg@3": (1 + LOG2_3) / 4},
        ),
        (
            "test",
            False,
            [3, 1, 0, 4],
            {"hr@1": 1 / 4, "ndcg@1": 1 / 4, "hr@3": 2 / 4, "ndcg@3": (1 + LOG2_3) / 4},
        ),
        (
            "test",
            True,
            [0, 0, 0, 3],
            {"hr@1": 3 / 4, "ndcg@1": 3 / 4, "hr@3": 3 / 4, "ndcg@3": 3 / 4},
        ),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_evaluate_ranker_matches_hand_worked_ranks(split, exclude, ranks, expected, batch_size):
    ranker = FixedOrderRanker(6)
    result = evaluate_ranker(ranker, USERS, split, (1, 3), exclude, batch_size, progress=False)
    # Ranks are only known within the top max(K) = 3; deeper ones read as not ranked.
    np.testing.assert_array_equal(result.ranks, [r if r < 3 else -1 for r in ranks])
    assert result.metrics == pytest.approx(expected)
    assert result.num_users == 4
    assert result.exclude_history is exclude
    assert result.to_dict()["exclude_history"] is exclude
    assert result.to_dict()["num_users"] == 4


def test_exclusion_asks_the_ranker_for_enough_items():
    ranker = FixedOrderRanker(6)
    evaluate_ranker(ranker, USERS, "test", (1, 3), True, batch_size=4, progress=False)
    # max K = 3 plus the longest test history (3 distinct items).
    assert ranker.asked == [6]
    evaluate_ranker(ranker, USERS, "test", (1, 3), False, batch_size=4, progress=False)
    assert ranker.asked[-1] == 3


def test_split_examples_follow_leave_one_out():
    valid = split_examples(USERS, "valid")
    test = split_examples(USERS, "test")
    assert valid.histories[0] == (0, 1) and valid.targets.tolist() == [2, 5, 2, 5]
    assert test.histories[0] == (0, 1, 2) and test.targets.tolist() == [3, 1, 0, 4]
    with pytest.raises(ValueError, match="split must be"):
        split_examples(USERS, "train")


def test_drop_seen_keeps_order_and_pads():
    ranked = np.array([[4, 1, 3, 0], [2, 0, -1, -1]])
    kept = drop_seen(ranked, [(1, 0), (2,)], num=3)
    # Row 0 loses 1 and 0; row 1 loses 2 and has only one unseen id left.
    np.testing.assert_array_equal(kept, [[4, 3, -1], [0, -1, -1]])


def test_a_repeated_target_is_a_miss_when_history_is_excluded():
    users = [UserSequence(0, "u", (1, 0, 1))]  # train (1,), valid 0, test 1
    result = evaluate_ranker(FixedOrderRanker(3), users, "test", (3,), True, 1, progress=False)
    assert result.metrics["hr@3"] == 0.0  # item 1 is in the test history, so it is dropped
    result = evaluate_ranker(FixedOrderRanker(3), users, "test", (3,), False, 1, progress=False)
    assert result.metrics["hr@3"] == 1.0
