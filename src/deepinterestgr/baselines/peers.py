"""Peers: independent sequential recommenders from the cornac library, on our split.

A result is only as trustworthy as its baselines and its evaluation code, so the ``peers``
stage trains another library's models (cornac 3.0.1: SASRec, BERT4Rec, GRU4Rec, TIGER; the
``peers`` extra, ``pip install -e '.[peers]'``) on exactly the users and leave-one-out split
of ``data/download`` and scores them twice:

* by cornac's own next-item evaluation (``NextItemEvaluation`` leave-last-out,
  ``mode="last"``): every catalogue item ranked, **seen items not removed**, Recall@K (= HR@K
  with one target) and NDCG@K per user;
* by our protocol (:func:`deepinterestgr.evaluation.ranking.evaluate_ranker`) on cornac's scores,
  under both ``exclude_history`` settings.

With ``exclude_history=false`` both evaluations must agree up to ties between equal scores, so
every peer run also cross-checks our evaluation code against an independent one.

Known limit of cornac 3.0.1: its validation score (``model_selection="best"``) skips items
unknown to training, so a validation target never seen in training gives NDCG NaN, the mean
is NaN, and the model silently keeps its last epoch (51 such users on Amazon Beauty).

Mapping: user ``u`` is cornac user ``str(u)``, item ``i`` cornac item ``str(i)``; a sequence's
position is its timestamp, so cornac's stable chronological sort keeps our order. cornac
numbers items in order of first appearance (training part first), which
:class:`CornacRanker` maps back. Items that occur in no sequence are unknown to cornac; our
protocol ranks them last for a peer.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from deepinterestgr.common.io import UserSequence

logger = logging.getLogger(__name__)

INSTALL = "pip install -e '.[peers]'"
# Our name -> (cornac class, modules it needs at training time).
PEER_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sasrec": ("SASRec", ("cornac", "torch")),
    "bert4rec": ("BERT4Rec", ("cornac", "torch")),
    "gru4rec": ("GRU4Rec", ("cornac", "torch")),
    # TIGER's published recipes (cornac.models.tiger.PAISCHER_CONFIG / GRID_CONFIG) train for
    # about an hour on a GPU; on a CPU it stays out of peers.run unless asked for.
    "tiger": ("TIGER", ("cornac", "torch", "transformers")),
}
TIGER_RECIPES = {"paischer": "PAISCHER_CONFIG", "grid": "GRID_CONFIG", "default": None}


class PeerError(ValueError):
    """The peers params ask for something that cannot run; the message is one line."""


def check_peers(
    run: Sequence[str],
    models: Mapping[str, Mapping[str, Any]],
    where: str = "params.yaml:peers",
    find_module=importlib.util.find_spec,
) -> None:
    """Fail before any training if a peer is unknown, its dependency missing or a key unknown.

    ``run``: peer names to train; ``models``: keyword arguments per peer for cornac's class
    (TIGER also takes ``recipe``: paischer | grid | default). ``find_module`` is
    :func:`importlib.util.find_spec` (replaceable in tests).
    """
    for name in run:
        if name not in PEER_MODELS:
            known = ", ".join(PEER_MODELS)
            raise PeerError(f"{where}.run: unknown peer '{name}' (known: {known})")
        if name not in models:
            raise PeerError(f"{where}.models.{name}: missing (keyword arguments for cornac)")
        missing = [m for m in PEER_MODELS[name][1] if find_module(m) is None]
        if missing:
            raise PeerError(
                f"{where}.run: peer '{name}' needs {', '.join(missing)}, not installed: {INSTALL}"
            )
    for name in run:
        accepted = set(inspect.signature(_cornac_class(name).__init__).parameters) - {"self"}
        if name == "tiger":
            accepted.add("recipe")
            recipe = models[name].get("recipe", "default")
            if recipe not in TIGER_RECIPES:
                raise PeerError(
                    f"{where}.models.tiger.recipe: unknown '{recipe}' "
                    f"(known: {', '.join(TIGER_RECIPES)})"
                )
        unknown = sorted(set(models[name]) - accepted)
        if unknown:
            raise PeerError(
                f"{where}.models.{name}.{unknown[0]}: not an argument of cornac's "
                f"{PEER_MODELS[name][0]}"
            )


def _cornac_class(name: str) -> type:
    import cornac.models

    return getattr(cornac.models, PEER_MODELS[name][0])


def build_peer(name: str, kwargs: Mapping[str, Any], seed: int) -> Any:
    """cornac's model ``name`` with ``kwargs`` (TIGER: its ``recipe`` first, then ``kwargs``)."""
    arguments = dict(kwargs)
    if name == "tiger":
        recipe = TIGER_RECIPES[arguments.pop("recipe", "default")]
        if recipe is not None:
            import cornac.models.tiger as tiger

            arguments = {**getattr(tiger, recipe), **arguments}
    return _cornac_class(name)(**{"seed": seed, **arguments})


def leave_last_out(
    users: Sequence[UserSequence], seed: int, item_features: np.ndarray | None = None
) -> Any:
    """cornac's ``NextItemEvaluation.leave_last_out`` over our users (see the module docstring).

    ``item_features``: float ``[N, d]`` content vectors of our items 0..N-1 (TIGER needs them).
    ``exclude_unknowns=False`` keeps a target that occurs only in validation or test (dropping
    it would shift that user's target to another item).
    """
    from cornac.eval_methods import NextItemEvaluation

    data = [
        (str(user.user_id), str(item), 1.0, position)
        for user in users
        for position, item in enumerate(user.items)
    ]
    extra = {}
    if item_features is not None:
        from cornac.data import FeatureModality

        ids = [str(i) for i in range(len(item_features))]
        extra["item_feature"] = FeatureModality(features=item_features, ids=ids)
    method = NextItemEvaluation.leave_last_out(
        data, fmt="UIRT", exclude_unknowns=False, mode="last", seed=seed, **extra
    )
    if len(method.test_set.sessions) != len(users):
        raise ValueError(
            f"cornac kept {len(method.test_set.sessions):,} of {len(users):,} users "
            "(it drops users with fewer than 3 items)"
        )
    return method


class CornacRanker:
    """Our :class:`~deepinterestgr.evaluation.ranking.Ranker` over a fitted cornac model's scores.

    ``item_index``: cornac's ``iid_map`` (``str(our id) -> cornac index``); ``num_items``: our
    catalogue size. Items cornac does not know score ``-inf`` (ranked last).
    """

    def __init__(self, model: Any, item_index: Mapping[str, int], num_items: int) -> None:
        self.model = model
        known = [i for i in range(num_items) if str(i) in item_index]
        self.ours = np.asarray(known, dtype=np.int64)
        self.theirs = np.asarray([item_index[str(i)] for i in known], dtype=np.int64)
        self.item_index = item_index
        self.num_items = num_items

    def scores(self, history: Sequence[int]) -> np.ndarray:
        """float64 ``[N]``: the model's score of every item of ours after ``history``."""
        theirs = [self.item_index[str(i)] for i in history]
        raw = np.asarray(self.model.score(None, history_items=theirs), dtype=np.float64)
        scores = np.full(self.num_items, -np.inf)
        scores[self.ours] = raw[self.theirs]
        return scores

    def rank(self, histories: Sequence[Sequence[int]], num: int) -> np.ndarray:
        """Top ``num`` ids per history, best first (ties: lower id first): int64 ``[B, L]``."""
        num = min(num, self.num_items)
        rows = []
        for history in histories:
            scores = self.scores(history)
            top = np.argpartition(-scores, num - 1)[:num] if num < len(scores) else np.arange(num)
            rows.append(top[np.lexsort((top, -scores[top]))])
        return np.stack(rows).astype(np.int64)


class PeerFit(NamedTuple):
    model: Any
    wall_time_s: float
    cpu_time_s: float  # CPU seconds of this process while fitting (all its threads)


def fit_peer(model: Any, method: Any) -> PeerFit:
    """Train ``model`` on ``method``'s training part (its validation part for model selection)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(method.train_set, method.val_set)
    return PeerFit(model, time.perf_counter() - started, time.process_time() - cpu_started)


class CornacScores(NamedTuple):
    metrics: dict[str, float]  # "hr@K" / "ndcg@K" averaged over users, cornac's own code
    per_user: dict[str, np.ndarray]  # same keys: float64 [U] in our user order


def cornac_evaluation(
    model: Any, method: Any, users: Sequence[UserSequence], ks: Sequence[int]
) -> CornacScores:
    """Test HR@K / NDCG@K by cornac's ``ranking_eval`` (full catalogue, seen items kept)."""
    from cornac.eval_methods.next_item_evaluation import ranking_eval
    from cornac.metrics import NDCG, Recall

    metrics = [m for k in ks for m in (Recall(k=k), NDCG(k=k))]
    model.transform(method.test_set)
    averages, per_user = ranking_eval(
        model=model,
        metrics=metrics,
        train_set=method.train_set,
        test_set=method.test_set,
        user_based=True,
        exclude_unknowns=False,
        mode="last",
    )
    user_index = method.test_set.uid_map
    keys = [f"{kind}@{k}" for k in ks for kind in ("hr", "ndcg")]
    results = {}
    for key, values in zip(keys, per_user, strict=True):
        results[key] = np.asarray(
            [np.mean(values[user_index[str(user.user_id)]]) for user in users], dtype=np.float64
        )
    return CornacScores({key: float(avg) for key, avg in zip(keys, averages, strict=True)}, results)


def difference_intervals(
    reference_ranks: np.ndarray,
    peer_ranks: np.ndarray,
    k: int,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Paired bootstrap of peer minus reference HR@K and NDCG@K over the same users.

    ``*_ranks``: int ``[U]`` target ranks (:func:`deepinterestgr.evaluation.metrics.target_ranks`)
    of the two rankers under one protocol. Returns ``{"hr@K": {...}, "ndcg@K": {...}}`` with the
    fields of :class:`deepinterestgr.evaluation.metrics.BootstrapInterval`.
    """
    from deepinterestgr.evaluation.metrics import paired_bootstrap, user_hits, user_ndcg

    return {
        f"{name}@{k}": paired_bootstrap(
            per_user(peer_ranks, k), per_user(reference_ranks, k), resamples, confidence, seed
        )._asdict()
        for name, per_user in (("hr", user_hits), ("ndcg", user_ndcg))
    }


def largest_disagreement(ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray]) -> float:
    """Largest per-user difference between two evaluations' values of the same metrics."""
    return max(float(np.max(np.abs(ours[key] - theirs[key]))) for key in theirs)
