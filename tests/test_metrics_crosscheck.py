"""Our HR@K / NDCG@K against trec_eval (through ir-measures' pytrec_eval provider).

The same score matrix goes to both: our evaluation ranks it (ties: lower item id first) and
takes ranks; trec_eval gets it as a run. trec_eval breaks ties by document name, larger name
first, so item i is named ``d{N - 1 - i}`` (zero-padded): a lower id has the larger name and
both sides order ties the same way. With one relevant item per user, trec_eval's
``success@K`` is HR@K and ``ndcg_cut@K`` is NDCG@K. For ``exclude_history`` the history items
are left out of the run, which is what the protocol means.
"""

from __future__ import annotations

from collections.abc import Sequence

import ir_measures
import numpy as np
import pytest
from ir_measures import Qrel, ScoredDoc, Success, nDCG

from deepinterestgr.common.io import UserSequence
from deepinterestgr.evaluation.metrics import user_hits, user_ndcg
from deepinterestgr.evaluation.ranking import evaluate_ranker

KS = (1, 3, 5, 10)
NUM_ITEMS = 30


class ScoreMatrixRanker:
    """Ranks by a fixed score row per user (rows follow the order histories are asked in)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores
        self.next_row = 0

    def rank(self, histories: Sequence[Sequence[int]], num: int) -> np.ndarray:
        rows = self.scores[self.next_row : self.next_row + len(histories)]
        self.next_row += len(histories)
        ids = np.arange(rows.shape[1])
        # Highest score first; equal scores: lower id first.
        return np.stack([np.lexsort((ids, -row))[:num] for row in rows])


def doc(item: int) -> str:
    return f"d{NUM_ITEMS - 1 - item:04d}"


def make_case(seed: int) -> tuple[list[UserSequence], np.ndarray]:
    """40 users with scores rounded to 1 decimal over 30 items: many ties, some at the cut-off."""
    rng = np.random.default_rng(seed)
    users = []
    for u in range(40):
        items = rng.choice(NUM_ITEMS, size=int(rng.integers(3, 8)), replace=False).tolist()
        if u % 10 == 0:  # the target also occurs in the history: a sure miss when excluded
            items[-1] = items[0]
        users.append(UserSequence(user_id=u, source_id=f"u{u}", items=tuple(items)))
    scores = np.round(rng.random((len(users), NUM_ITEMS)), 1)
    # Force ties around the target: a block of equal scores that straddles several cut-offs.
    for u, user in enumerate(users[:20]):
        peers = rng.choice(NUM_ITEMS, size=6, replace=False)
        scores[u, peers] = scores[u, user.items[-1]] = 0.95
    return users, scores


def trec_eval_values(users, scores, exclude_history: bool) -> dict[str, np.ndarray]:
    qrels = [Qrel(str(u.user_id), doc(u.test_target), 1) for u in users]
    run = []
    for user, row in zip(users, scores, strict=True):
        seen = set(user.test_history) if exclude_history else set()
        run += [
            ScoredDoc(str(user.user_id), doc(i), float(row[i]))
            for i in range(NUM_ITEMS)
            if i not in seen
        ]
    measures = [m for k in KS for m in (Success @ k, nDCG @ k)]
    values = {f"{kind}@{k}": np.zeros(len(users)) for k in KS for kind in ("hr", "ndcg")}
    provider = ir_measures.providers.registry["pytrec_eval"]
    for metric in provider.iter_calc(measures, qrels, run):
        kind = "hr" if metric.measure.NAME == "Success" else "ndcg"
        values[f"{kind}@{metric.measure['cutoff']}"][int(metric.query_id)] = metric.value
    return values


@pytest.mark.parametrize("exclude_history", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hr_and_ndcg_agree_with_trec_eval_per_user(exclude_history, seed):
    users, scores = make_case(seed)
    ours = evaluate_ranker(
        ScoreMatrixRanker(scores), users, "test", KS, exclude_history, batch_size=7
    )
    theirs = trec_eval_values(users, scores, exclude_history)
    for k in KS:
        np.testing.assert_allclose(user_hits(ours.ranks, k), theirs[f"hr@{k}"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(user_ndcg(ours.ranks, k), theirs[f"ndcg@{k}"], rtol=0, atol=1e-9)
        assert ours.metrics[f"hr@{k}"] == pytest.approx(theirs[f"hr@{k}"].mean(), abs=1e-9)
        assert ours.metrics[f"ndcg@{k}"] == pytest.approx(theirs[f"ndcg@{k}"].mean(), abs=1e-9)


def test_the_case_exercises_ties_at_the_cut_off_and_excluded_targets():
    """Guard against a case too easy to tell a wrong tie rule or exclusion apart."""
    users, scores = make_case(0)
    straddling = 0
    for user, row in zip(users, scores, strict=True):
        target = row[user.test_target]
        above, tied = int((row > target).sum()), int((row == target).sum())
        straddling += any(above < k < above + tied for k in KS)
    assert straddling >= 5
    assert sum(u.test_target in u.test_history for u in users) >= 3
