"""Cross-backend merge: normalisation, string and embedding dedupe, provenance, ordering."""

from __future__ import annotations

import pytest

from deepinterestgr.common.io import Interest, ItemInterests, UserInterests
from deepinterestgr.interests import merge as interest_merge
from deepinterestgr.interests.merge import (
    dedupe_key,
    merge_many,
    merge_many_users,
    normalise_descriptor,
)
from deepinterestgr.items.text_encoder import BUNDLED_MINILM, encode_texts

STRING_ONLY = 1.01  # above any cosine: no encoder needed
BATCH = 2  # encoder batch: several batches even for these few descriptors


def merge_one(per_backend, max_descriptors, similarity_threshold):
    """The merged interests of one item proposed by several backends (one list each)."""
    rows = [[ItemInterests(0, tuple(interests))] for interests in per_backend]
    (row,) = merge_many(rows, max_descriptors, similarity_threshold, BUNDLED_MINILM, BATCH)
    return row.interests


def test_normalise_and_key_by_hand():
    assert normalise_descriptor("  Salon-Quality   Manicure at HOME. ") == (
        "salon-quality manicure at home"
    )
    assert normalise_descriptor('"Glow!"') == "glow"
    assert dedupe_key("Salon-quality manicure at home") == "salon quality manicure at home"
    assert dedupe_key("salon quality manicure at home.") == "salon quality manicure at home"
    assert dedupe_key("...") == ""


def test_two_backends_spelling_one_interest_merge_with_both_models():
    claude = [
        Interest("Salon-quality manicure at home", 0.9, ("claude",)),
        Interest("glitter nail look", 0.5, ("claude",)),
    ]
    offline = [
        Interest("salon quality manicure at home.", 0.7, ("offline",)),
        Interest("nail polish", 0.6, ("offline",)),
    ]
    merged = merge_one([claude, offline], 10, STRING_ONLY)
    # Worked by hand: agreement 2 first, confidence = mean(0.9, 0.7) = 0.8; then the
    # single-model interests by confidence.
    assert merged == (
        Interest("salon-quality manicure at home", 0.8, ("claude", "offline")),
        Interest("nail polish", 0.6, ("offline",)),
        Interest("glitter nail look", 0.5, ("claude",)),
    )


def test_agreement_outranks_confidence_and_max_descriptors_truncates():
    a = [Interest("dry skin relief", 0.3, ("a",)), Interest("bold red lips", 0.99, ("a",))]
    b = [Interest("Dry skin relief", 0.2, ("b",)), Interest("travel size kit", 0.4, ("b",))]
    merged = merge_one([a, b], 2, STRING_ONLY)
    assert [x.descriptor for x in merged] == ["dry skin relief", "bold red lips"]
    assert merged[0].confidence == pytest.approx(0.25)
    assert merged[0].models == ("a", "b")


def test_one_model_counts_once_with_its_best_confidence():
    a = [Interest("nail art", 0.4, ("a",)), Interest("Nail-art", 0.8, ("a",))]
    b = [Interest("nail art", 0.6, ("b",))]
    (merged,) = merge_one([a, b], 5, STRING_ONLY)
    assert merged.confidence == pytest.approx((0.8 + 0.6) / 2)
    assert merged.models == ("a", "b")


def test_embedding_dedupe_merges_near_duplicates_only():
    near_a, near_b, other = "hydrating dry skin", "hydration for dry skin", "bold red lipstick"
    vectors = encode_texts([near_a, near_b, other])
    close, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert close > far
    threshold = (close + far) / 2
    merged = merge_one(
        [
            [Interest(near_a, 0.9, ("a",)), Interest(other, 0.5, ("a",))],
            [Interest(near_b, 0.7, ("b",))],
        ],
        5,
        threshold,
    )
    # The strongest member (agreement equal, higher confidence) names the merged interest.
    assert merged == (
        Interest(near_a, pytest.approx(0.8), ("a", "b")),
        Interest(other, 0.5, ("a",)),
    )


@pytest.mark.parametrize(
    ("interest", "message"),
    [
        (Interest("nail art", 0.5, ()), "has no 'models'"),
        (Interest("nail art", 1.5, ("a",)), "expected a value in [0, 1]"),
    ],
)
def test_bad_interests_are_rejected(interest, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        merge_one([[interest]], 5, STRING_ONLY)


def _rows():
    llm = [
        ItemInterests(1, (Interest("Gentle daily cleansing", 0.8, ("gpt",)),)),
        ItemInterests(0, (Interest("salon-quality manicure at home", 0.9, ("gpt",)),)),
    ]
    offline = [
        ItemInterests(
            0,
            (
                Interest("salon quality manicure at home", 0.5, ("offline",)),
                Interest("nail polish", 0.6, ("offline",)),
            ),
            offline=True,
        ),
        ItemInterests(2, (Interest("hair care shampoos", 0.4, ("offline",)),), offline=True),
    ]
    return llm, offline


def test_merge_many_matches_per_item_merge_and_encodes_once(monkeypatch):
    llm, offline = _rows()
    calls = []
    real_encode = interest_merge.encode_texts

    def counting_encode(texts, *args, **kwargs):
        calls.append(len(texts))
        return real_encode(texts, *args, **kwargs)

    monkeypatch.setattr(interest_merge, "encode_texts", counting_encode)
    merged = merge_many([llm, offline], 5, 0.9, BUNDLED_MINILM, BATCH)
    assert len(calls) == 1
    assert [row.item_id for row in merged] == [0, 1, 2]
    assert [row.offline for row in merged] == [False, False, True]
    assert merged[0].interests[0] == Interest(
        "salon-quality manicure at home", pytest.approx(0.7), ("gpt", "offline")
    )
    assert merged[0].interests == merge_one([llm[1].interests, offline[0].interests], 5, 0.9)
    assert merged == merge_many([llm, offline], 5, 0.9, BUNDLED_MINILM, BATCH)  # deterministic


def test_merge_many_rejects_an_id_twice_in_one_backend():
    llm, _ = _rows()
    with pytest.raises(ValueError, match="backend 0: id 1 appears twice"):
        merge_many([[*llm, llm[0]]], 5, STRING_ONLY, BUNDLED_MINILM, BATCH)


def test_merge_many_users_keys_on_user_id():
    a = [UserInterests(3, (Interest("nail art", 0.4, ("a",)),))]
    b = [UserInterests(3, (Interest("Nail art!", 0.8, ("b",)),), offline=True)]
    (merged,) = merge_many_users([a, b], 5, STRING_ONLY, BUNDLED_MINILM, BATCH)
    assert merged == UserInterests(3, (Interest("nail art", pytest.approx(0.6), ("a", "b")),))
