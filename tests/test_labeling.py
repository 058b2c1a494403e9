"""Judges, the interest classifier and q_i (the LLM judge: test_llm_judge.py)."""

from __future__ import annotations

import numpy as np
import pytest

from deepinterestgr.common.io import Interest, ItemInterests
from deepinterestgr.common.params import ClassifierParams
from deepinterestgr.interests.labeling import (
    apply_labels,
    expected_calibration_error,
    fit_classifier,
    flatten,
    group_split,
    item_quality,
    label_interests,
    lexical_overlap,
    make_offline_judge,
    offline_judge,
    quality_summary,
)

LOGISTIC = ClassifierParams(
    "logistic_regression", C=1.0, max_iter=1000, learning_rate=0.1, max_leaf_nodes=31
)
BOOSTING = ClassifierParams(
    "hist_gradient_boosting", C=1.0, max_iter=50, learning_rate=0.1, max_leaf_nodes=7
)


VOCABULARY: dict[str, int] = {}


def bag_of_words(texts, dim=512):
    """A deterministic stand-in encoder: word counts (one dimension per word), unit rows."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, VOCABULARY.setdefault(word, len(VOCABULARY)) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def labelled(confidences, positives):
    return ItemInterests(
        0,
        tuple(
            Interest(f"d{k}", c, ("m",), 0.5, p)
            for k, (c, p) in enumerate(zip(confidences, positives, strict=True))
        ),
    )


# --------------------------------------------------------------------------- q_i


def test_quality_is_the_confidence_weighted_share_of_positives():
    rows = [labelled([0.9, 0.6, 0.5], [True, False, True]), ItemInterests(1, ())]
    quality = item_quality(rows, empty_quality=0.0)
    assert quality.dtype == np.float32
    assert quality[0] == pytest.approx((0.9 + 0.5) / 2.0)  # 0.7
    assert quality[1] == 0.0


def test_quality_of_zero_confidences_is_the_plain_share_and_empty_items_take_the_param():
    rows = [labelled([0.0, 0.0, 0.0, 0.0], [True, False, False, False]), ItemInterests(1, ())]
    assert item_quality(rows, empty_quality=0.25).tolist() == pytest.approx([0.25, 0.25])


def test_quality_summary_counts_positives_and_quantiles():
    rows = [labelled([0.9, 0.6, 0.5], [True, False, True]), ItemInterests(1, ())]
    summary = quality_summary(item_quality(rows, 0.0), rows)
    assert summary["interests"] == 3 and summary["items_without_interests"] == 1
    assert summary["positive_share"] == pytest.approx(2 / 3)
    assert summary["q_mean"] == pytest.approx(0.35)
    assert summary["q_p50"] == pytest.approx(0.35)


def test_apply_labels_sets_probability_and_threshold_in_flatten_order():
    rows = [
        ItemInterests(0, (Interest("a", 0.9), Interest("b", 0.8))),
        ItemInterests(1, (Interest("c", 0.7),)),
    ]
    out = apply_labels(rows, np.array([0.7, 0.5, 0.2]), threshold=0.5)
    assert [(i.p_positive, i.positive) for r in out for i in r.interests] == [
        (0.7, True),
        (0.5, True),
        (0.2, False),
    ]
    with pytest.raises(ValueError, match="2 probabilities for 3 interests"):
        apply_labels(rows, np.array([0.7, 0.5]), threshold=0.5)


# --------------------------------------------------------------------------- offline judge


def test_lexical_overlap_matches_word_stems():
    assert lexical_overlap("moisturizing dry skin", "Moisturizer for Dry Skin") == 1.0
    assert lexical_overlap("glossy red nails", "OPI Nail Lacquer, Red") == pytest.approx(2 / 3)
    assert lexical_overlap("the and of", "anything") == 0.0


def test_offline_judge_scores_own_similarity_minus_mean_other_plus_lexical():
    items = np.eye(3, dtype=np.float32)  # three orthogonal items
    descriptors = np.array([[1, 0, 0], [0.6, 0.8, 0]], dtype=np.float32)  # both of item 0
    judged = offline_judge(descriptors, np.array([0, 0]), items, np.array([0.0, 1.0]), 0.1, 0.3)
    # own 1.0 - mean(0, 0) + 0 = 1.0; own 0.6 - mean(0.8, 0) + 0.1 * 1 = 0.3
    assert judged.scores.tolist() == pytest.approx([1.0, 0.3])
    assert judged.labels.tolist() == [1, 1]


# --------------------------------------------------------------------------- classifier


def separable(n=400, d=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    features = rng.normal(size=(n, d)).astype(np.float32)
    features[:, 0] += 4.0 * (2 * labels - 1)
    return features, labels, np.arange(n) // 2  # two interests per item


@pytest.mark.parametrize("settings", [LOGISTIC, BOOSTING])
def test_classifier_learns_separable_labels(settings):
    features, labels, groups = separable()
    test_mask = group_split(groups, 0.25, np.random.default_rng(1))
    report = fit_classifier(features, labels, test_mask, settings, 0.5, 10, seed=0)
    assert report.metrics["auc"] > 0.99
    assert report.metrics["accuracy"] > 0.95
    assert report.metrics["brier"] < 0.05
    assert report.metrics["test_size"] == test_mask.sum() == 100


def test_group_split_holds_out_whole_items():
    groups = np.repeat(np.arange(10), 3)
    mask = group_split(groups, 0.3, np.random.default_rng(0))
    assert mask.sum() == 9
    assert set(groups[mask]).isdisjoint(groups[~mask])


def test_single_class_judge_labels_fail_with_a_message():
    features, _, groups = separable()
    with pytest.raises(ValueError, match="adjust the judge threshold"):
        fit_classifier(features, np.ones(len(features), int), groups < 50, LOGISTIC, 0.5, 10, 0)


def test_expected_calibration_error_by_hand():
    # bins of width 0.1: 0.1 alone (label 0), 0.9 alone (label 1) -> 0.5 * 0.1 + 0.5 * 0.1
    assert expected_calibration_error(np.array([0, 1]), np.array([0.1, 0.9]), 10) == pytest.approx(
        0.1
    )
    # one bin holding p=0.5 twice with labels 0 and 1 is perfectly calibrated
    assert expected_calibration_error(np.array([0, 1]), np.array([0.5, 0.5]), 10) == 0.0


def synthetic_catalogue(num_items=40):
    """Items whose grounded descriptors share their words; the generic ones fit no item."""
    evidence, rows = [], []
    for i in range(num_items):
        words = f"alpha{i} beta{i} gamma{i}"
        evidence.append(f"product {words}")
        rows.append(
            ItemInterests(
                i,
                (
                    Interest(f"alpha{i} beta{i}", 0.9, ("a", "b")),
                    Interest("everyday routine", 0.7, ("a",)),
                    Interest(f"gamma{i} focus", 0.6, ("b",)),
                    Interest("good quality", 0.4, ("a",)),
                ),
            )
        )
    return evidence, rows


def test_label_interests_labels_every_interest_and_learns_the_offline_judge():
    evidence, rows = synthetic_catalogue()
    result = label_interests(
        rows,
        evidence,
        bag_of_words,
        make_offline_judge(0.2, 0.3),
        sample_size=120,
        test_fraction=0.25,
        classifier=LOGISTIC,
        threshold=0.5,
        empty_quality=0.0,
        ece_bins=10,
        seed=0,
    )
    assert len(result.rows) == 40 and result.quality.shape == (40,)
    flat = [i for r in result.rows for i in r.interests]
    assert all(i.p_positive is not None and i.positive == (i.p_positive >= 0.5) for i in flat)
    for record in result.judged:  # the rule: item-specific words are grounded, generic ones not
        generic = record["descriptor"] in ("everyday routine", "good quality")
        assert record["label"] == (0 if generic else 1), record
    assert result.metrics["judge_sample"] == 120 and result.metrics["auc"] > 0.95
    assert [r.item_id for r in result.rows] == list(range(40))
    assert flatten(result.rows).descriptors == flatten(rows).descriptors
