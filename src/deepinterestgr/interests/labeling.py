"""Reward-labelled deep interests (RLDI, METHOD.md ``label``).

A judge labels a sample of mined interests 1 (specific, grounded in the item's evidence,
useful) or 0 (generic, invented, off-item). A scikit-learn classifier on cheap features learns
those labels and gives every interest a probability ``p_positive``; ``positive`` is
``p_positive >= threshold``. Per item, the quality ``q_i`` is the confidence-weighted share of
positive descriptors; it scales the reward's exact-hit bonus.

Judges: :func:`offline_judge` (no LLM, deterministic: grounding in the item's own text against
the rest of the catalogue) and the LLM judge of :mod:`deepinterestgr.interests.llm_judge`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepinterestgr.common.io import ItemInterests
from deepinterestgr.common.params import ClassifierParams

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- interests table


class InterestTable(NamedTuple):
    """Every interest of every item, flattened in item order then stored order; M rows."""

    item_ids: np.ndarray  # int64 [M]
    descriptors: tuple[str, ...]  # [M]
    confidences: np.ndarray  # float32 [M], the miner's stated confidence in [0, 1]
    agreements: np.ndarray  # float32 [M], how many models proposed it (len(models), >= 1)


def flatten(rows: Sequence[ItemInterests]) -> InterestTable:
    item_ids, descriptors, confidences, agreements = [], [], [], []
    for row in rows:
        for interest in row.interests:
            item_ids.append(row.item_id)
            descriptors.append(interest.descriptor)
            confidences.append(interest.confidence)
            agreements.append(max(len(interest.models), 1))
    return InterestTable(
        np.asarray(item_ids, dtype=np.int64),
        tuple(descriptors),
        np.asarray(confidences, dtype=np.float32),
        np.asarray(agreements, dtype=np.float32),
    )


# --------------------------------------------------------------------------- offline judge

_STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
        "its", "of", "on", "or", "the", "to", "with", "without", "your", "you", "this", "that",
        "these", "those", "very", "more", "most", "less", "all", "any", "each",
    }
)  # fmt: skip


def content_stems(text: str) -> set[str]:
    """Lower-case word stems (plural ``s`` dropped, first 5 letters) minus stop words.

    Crude on purpose: "moisturizing"/"moisturizer" and "nails"/"nail" must match, and the
    judge must not depend on a language resource that may be missing offline.
    """
    stems = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOPWORDS or len(word) < 3:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        stems.add(word[:5])
    return stems


def lexical_overlap(descriptor: str, evidence: str) -> float:
    """Share of the descriptor's content stems found in the item's evidence, in [0, 1]."""
    stems = content_stems(descriptor)
    return len(stems & content_stems(evidence)) / len(stems) if stems else 0.0


class JudgeLabels(NamedTuple):
    labels: np.ndarray  # int64 [S] in {0, 1}; -1 where the judge failed
    scores: np.ndarray  # float32 [S]: the rule's score (offline) or NaN (LLM)


def offline_judge(
    descriptor_vectors: np.ndarray,
    item_ids: np.ndarray,
    item_vectors: np.ndarray,
    overlaps: np.ndarray,
    lexical_weight: float,
    threshold: float,
) -> JudgeLabels:
    """Label descriptors by their grounding in their own item against all other items.

    score = cos(d, own item) - mean_{j != own} cos(d, item j) + lexical_weight * overlap,
    label = score >= threshold. A generic descriptor ("daily beauty routine") is about as close
    to every item as to its own, so its margin is small; one about another product is farther
    from its own item than usual; a grounded one is close to its own item and shares words
    with it. The mean over other items is exact (one dot product with the sum of unit rows),
    so the rule needs no sampling.

    Shapes: descriptor_vectors [S, d] and item_vectors [N, d] unit rows; item_ids int [S];
    overlaps float [S] in [0, 1].
    """
    num_items = item_vectors.shape[0]
    if num_items < 2:
        raise ValueError("the offline judge needs at least 2 items to contrast against")
    own = item_vectors[item_ids]
    own_similarity = np.einsum("sd,sd->s", descriptor_vectors, own)
    others_sum = item_vectors.sum(axis=0)[None, :] - own
    mean_other = (descriptor_vectors * others_sum).sum(axis=1) / (num_items - 1)
    scores = own_similarity - mean_other + lexical_weight * overlaps
    return JudgeLabels((scores >= threshold).astype(np.int64), scores.astype(np.float32))


class JudgeSample(NamedTuple):
    """What a judge sees: S sampled interests with their item's evidence."""

    evidence: Sequence[str]  # [S] the own text of each interest's item
    descriptors: Sequence[str]  # [S]
    item_ids: np.ndarray  # int64 [S]
    descriptor_vectors: np.ndarray  # float32 [S, d], unit rows
    item_vectors: np.ndarray  # float32 [N, d], every item's evidence embedding, unit rows


# A judge labels a sample: the offline rule below or an LLM (deepinterestgr.interests.llm_judge).
Judge = Callable[[JudgeSample], JudgeLabels]


def make_offline_judge(lexical_weight: float, threshold: float) -> Judge:
    """:func:`offline_judge` as a :data:`Judge` (lexical overlap computed from the sample)."""

    def judge(sample: JudgeSample) -> JudgeLabels:
        overlaps = np.array(
            [
                lexical_overlap(d, e)
                for d, e in zip(sample.descriptors, sample.evidence, strict=True)
            ],
            dtype=np.float32,
        )
        return offline_judge(
            sample.descriptor_vectors,
            sample.item_ids,
            sample.item_vectors,
            overlaps,
            lexical_weight,
            threshold,
        )

    return judge


# --------------------------------------------------------------------------- classifier


def interest_features(
    descriptor_vectors: np.ndarray,
    item_vectors: np.ndarray,
    confidences: np.ndarray,
    agreements: np.ndarray,
) -> np.ndarray:
    """Cheap features per interest: float32 [M, 2d + 3].

    [descriptor embedding (d), its item's embedding (d), their cosine, model agreement,
    stated confidence]; ``item_vectors`` is already gathered per interest ([M, d]).
    """
    cosine = np.einsum("md,md->m", descriptor_vectors, item_vectors)
    return np.hstack(
        [
            descriptor_vectors,
            item_vectors,
            cosine[:, None],
            agreements[:, None],
            confidences[:, None],
        ]
    ).astype(np.float32)


def make_classifier(settings: ClassifierParams, seed: int) -> Any:
    """The scikit-learn estimator named by ``settings.kind`` (predict_proba gives p_positive)."""
    if settings.kind == "logistic_regression":
        # Standardised so C means the same for embeddings (~0.05) and agreement counts (1-4).
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=settings.C, max_iter=settings.max_iter, random_state=seed),
        )
    if settings.kind == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            learning_rate=settings.learning_rate,
            max_iter=settings.max_iter,
            max_leaf_nodes=settings.max_leaf_nodes,
            random_state=seed,
        )
    raise ValueError(f"unknown classifier kind '{settings.kind}'")


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """ECE = sum_b (n_b / n) * |mean label in b - mean probability in b|, equal-width bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(labels[mask].mean() - probabilities[mask].mean())
    return float(total)


class ClassifierReport(NamedTuple):
    model: Any  # fitted estimator
    metrics: dict[str, float]  # held-out auc, accuracy, brier, ece and sizes


def group_split(groups: np.ndarray, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean test mask [S] that holds out whole groups (items), so no item's embedding is
    seen in training and testing; at least one group on each side."""
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError("the judged sample covers fewer than 2 items: cannot hold any out")
    count = min(max(round(test_fraction * len(unique)), 1), len(unique) - 1)
    test_groups = rng.permutation(unique)[:count]
    return np.isin(groups, test_groups)


def fit_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    test_mask: np.ndarray,
    settings: ClassifierParams,
    threshold: float,
    ece_bins: int,
    seed: int,
) -> ClassifierReport:
    """Fit on ``~test_mask`` rows, report agreement with the judge on ``test_mask`` rows.

    Metrics: ``auc`` (ROC AUC, NaN when the held-out judge labels are all one class),
    ``accuracy`` at ``threshold``, ``brier`` and ``ece`` (calibration), plus sizes.
    """
    train_labels = labels[~test_mask]
    if len(np.unique(train_labels)) < 2:
        raise ValueError(
            f"the judge gave every one of {len(train_labels):,} training interests the label "
            f"{train_labels[0] if len(train_labels) else '?'}; adjust the judge threshold"
        )
    model = make_classifier(settings, seed).fit(features[~test_mask], train_labels)
    test_labels = labels[test_mask]
    p = model.predict_proba(features[test_mask])[:, 1]
    single_class = len(np.unique(test_labels)) < 2
    if single_class:
        log.warning("held-out judge labels are all %d: AUC undefined", test_labels[0])
    metrics = {
        "auc": float("nan") if single_class else float(roc_auc_score(test_labels, p)),
        "accuracy": float(accuracy_score(test_labels, p >= threshold)),
        "brier": float(brier_score_loss(test_labels, p, labels=[0, 1])),
        "ece": expected_calibration_error(test_labels, p, ece_bins),
        "train_size": int((~test_mask).sum()),
        "test_size": int(test_mask.sum()),
        "judge_positive_share": float(labels.mean()),
    }
    return ClassifierReport(model, metrics)


# --------------------------------------------------------------------------- labels and quality


def apply_labels(
    rows: Sequence[ItemInterests], probabilities: np.ndarray, threshold: float
) -> list[ItemInterests]:
    """Copy ``rows`` with ``p_positive`` and ``positive`` set; ``probabilities`` follow
    :func:`flatten`'s order (item order, then stored order)."""
    count = sum(len(row.interests) for row in rows)
    if count != len(probabilities):
        raise ValueError(f"{len(probabilities)} probabilities for {count} interests")
    out, k = [], 0
    for row in rows:
        interests = []
        for interest in row.interests:
            p = round(float(probabilities[k]), 6)
            interests.append(replace(interest, p_positive=p, positive=p >= threshold))
            k += 1
        out.append(replace(row, interests=tuple(interests)))
    return out


def item_quality(rows: Sequence[ItemInterests], empty_quality: float) -> np.ndarray:
    """q_i = sum_k c_k * positive_k / sum_k c_k over item i's descriptors: float32 [N].

    An item without descriptors gets ``empty_quality``; one whose confidences are all zero
    gets the unweighted share of positives (the weights carry no information then).
    """
    quality = np.empty(len(rows), dtype=np.float32)
    for k, row in enumerate(rows):
        if not row.interests:
            quality[k] = empty_quality
            continue
        weights = np.array([i.confidence for i in row.interests], dtype=np.float64)
        positive = np.array([bool(i.positive) for i in row.interests], dtype=np.float64)
        if weights.sum() <= 0:
            weights = np.ones_like(weights)
        quality[k] = (weights * positive).sum() / weights.sum()
    return quality


def quality_summary(quality: np.ndarray, rows: Sequence[ItemInterests]) -> dict[str, float]:
    """Distribution of q_i and of the labels, for ``metrics/label.json``."""
    positives = [bool(i.positive) for row in rows for i in row.interests]
    summary = {
        "items": len(rows),
        "interests": len(positives),
        "positive_share": float(np.mean(positives)) if positives else 0.0,
        "items_without_interests": sum(1 for row in rows if not row.interests),
        "q_mean": float(quality.mean()) if len(quality) else 0.0,
    }
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        summary[f"q_p{round(q * 100)}"] = float(np.quantile(quality, q)) if len(quality) else 0.0
    summary["q_share_zero"] = float((quality == 0).mean()) if len(quality) else 0.0
    summary["q_share_one"] = float((quality == 1).mean()) if len(quality) else 0.0
    return summary


# --------------------------------------------------------------------------- the whole step


class LabelingResult(NamedTuple):
    rows: list[ItemInterests]  # one per item id 0..N-1, interests labelled
    quality: np.ndarray  # float32 [N], q_i
    judged: list[dict[str, Any]]  # the judged sample: item_id, descriptor, label, score, split
    metrics: dict[str, Any]  # classifier report + quality summary


def label_interests(
    rows: Sequence[ItemInterests],
    evidence: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray],
    judge: Judge,
    sample_size: int,
    test_fraction: float,
    classifier: ClassifierParams,
    threshold: float,
    empty_quality: float,
    ece_bins: int,
    seed: int,
) -> LabelingResult:
    """Judge a sample, learn the judge, label every interest and score every item.

    ``rows`` has one row per item id 0..N-1 (see :func:`io.align_item_interests`),
    ``evidence[i]`` is item i's own text, ``embed`` maps texts to unit float32 rows.
    ``judge`` labels a sample of ``sample_size`` interests (:func:`make_offline_judge` or
    an LLM judge); its failures (label -1) are left out of training and testing.
    """
    rng = np.random.default_rng(seed)
    table = flatten(rows)
    if len(table.descriptors) == 0:
        raise ValueError("no interests to label: the mine output holds no descriptors")
    item_vectors = embed(evidence)
    unique = sorted(set(table.descriptors))
    unique_vectors = embed(unique)
    index = {d: k for k, d in enumerate(unique)}
    descriptor_vectors = unique_vectors[[index[d] for d in table.descriptors]]
    features = interest_features(
        descriptor_vectors, item_vectors[table.item_ids], table.confidences, table.agreements
    )

    size = min(sample_size, len(table.descriptors))
    sample = np.sort(rng.choice(len(table.descriptors), size=size, replace=False))
    sample_descriptors = [table.descriptors[k] for k in sample]
    sample_items = table.item_ids[sample]
    judged = judge(
        JudgeSample(
            [evidence[i] for i in sample_items],
            sample_descriptors,
            sample_items,
            descriptor_vectors[sample],
            item_vectors,
        )
    )
    ok = judged.labels >= 0
    test_mask = group_split(sample_items[ok], test_fraction, rng)
    report = fit_classifier(
        features[sample[ok]], judged.labels[ok], test_mask, classifier, threshold, ece_bins, seed
    )
    probabilities = report.model.predict_proba(features)[:, 1]
    labelled = apply_labels(rows, probabilities, threshold)
    quality = item_quality(labelled, empty_quality)

    split = np.full(size, "failed", dtype=object)
    split[np.flatnonzero(ok)] = np.where(test_mask, "test", "train")
    judged_records = [
        {
            "item_id": int(sample_items[k]),
            "descriptor": sample_descriptors[k],
            "label": int(judged.labels[k]),
            "score": None if np.isnan(judged.scores[k]) else round(float(judged.scores[k]), 6),
            "p_positive": round(float(probabilities[sample[k]]), 6),
            "split": str(split[k]),
        }
        for k in range(size)
    ]
    metrics = {
        "judge_sample": size,
        "judge_failed": int((~ok).sum()),
        **report.metrics,
        **quality_summary(quality, labelled),
    }
    return LabelingResult(labelled, quality, judged_records, metrics)
