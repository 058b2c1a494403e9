"""The offline miner: candidate phrases, co-purchases from training only, determinism, users."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from deepinterestgr.common.io import Interest, Item, ItemInterests, UserSequence
from deepinterestgr.common.params import load
from deepinterestgr.interests.offline_miner import (
    category_phrases,
    co_purchase_matrix,
    item_text,
    mine_items_offline,
    mine_users_offline,
    own_candidates,
    text_ngrams,
)
from deepinterestgr.items.text_encoder import BUNDLED_MINILM

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = load("mine", ROOT / "params.yaml").offline  # the project's offline miner params

NAILS = ("Beauty", "Makeup", "Nails", "Nail Polish")
SHAMPOO = ("Beauty", "Hair Care", "Shampoos")
FACE = ("Beauty", "Skin Care", "Face", "Creams & Moisturizers")

CATALOGUE = [
    ("Glossy Red Nail Polish Lacquer 0.5 oz", "Glossa", NAILS),
    ("Quick Dry Nail Polish Top Coat, Clear", "Glossa", NAILS),
    ("Shimmer Nail Polish Lacquer, Pink Glitter", "Shinee", NAILS),
    ("Cuticle Oil Pen for Nail Care", None, ("Beauty", "Skin Care", "Hands & Nails")),
    ("Moisturizing Shampoo for Dry Hair, 12 fl oz", "Hairly", SHAMPOO),
    ("Volumizing Shampoo for Fine Hair", "Hairly", SHAMPOO),
    ("Argan Oil Moisturizing Shampoo for Dry Hair", None, SHAMPOO),
    ("Hydrating Face Cream for Dry Skin with Hyaluronic Acid", "Dermo", FACE),
    ("Anti Aging Night Cream with Hyaluronic Acid", "Dermo", FACE),
    ("Anti Aging Eye Cream for Dry Skin", None, FACE),
]
ITEMS = [
    Item(k, f"A{k}", title, brand, (path,)) for k, (title, brand, path) in enumerate(CATALOGUE)
]
# Training histories; each user's last two items are the validation and test targets.
USERS = [
    UserSequence(0, "u0", (0, 3, 1, 2, 9, 8)),
    UserSequence(1, "u1", (4, 6, 5, 7, 2, 1)),
    UserSequence(2, "u2", (7, 8, 9, 3, 4, 0)),
    UserSequence(3, "u3", (2, 3, 0, 1, 5, 6)),
]


@pytest.fixture(scope="module")
def mined() -> list[ItemInterests]:
    return mine_items_offline(ITEMS, USERS, 4, BUNDLED_MINILM, SETTINGS)


def test_text_ngrams_by_hand():
    # The brand and the size cut the runs; stopwords never stand at an edge.
    assert text_ngrams("OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce", "OPI", 3) == {
        "nail lacquer",
        "simmer and shimmer",
    }
    assert text_ngrams("Shampoo & Conditioner Set for Dry Hair", None, 2) == {"dry hair"}
    assert text_ngrams("Crème Brûlée Body Butter", None, 2) == {
        "crème brûlée",
        "brûlée body",
        "body butter",
    }


def test_category_phrases_by_hand():
    assert category_phrases([("Beauty", "Makeup", "Eyes", "Mascara")]) == {"mascara for eyes"}
    assert category_phrases([FACE]) == {"creams & moisturizers"}
    assert category_phrases([SHAMPOO]) == {"shampoos for hair"}
    assert category_phrases([("Beauty", "Skin Care", "Body", "Moisturizers", "Oils")]) == {
        "oils for body"
    }
    assert category_phrases([("Beauty", "Tools", "Makeup Brushes", "Sets")]) == {
        "makeup brushes sets"
    }
    assert category_phrases([("Beauty", "Skin Care", "Face", "Fluids & Lotions", "Fluids")]) == {
        "fluids & lotions"
    }
    assert category_phrases([("Beauty", "Skin Care", "Face")]) == {"skin care for face"}
    assert category_phrases([("Beauty", "Makeup")]) == set()
    assert category_phrases([("Beauty", "Fragrance", "Women's")]) == set()
    assert category_phrases([("Beauty", "Fragrance", "Men's", "Cologne")]) == {"fragrance cologne"}
    assert category_phrases([("Beauty", "Fragrance", "Women's", "Eau de Parfum")]) == {
        "eau de parfum"
    }
    assert category_phrases([("Beauty", "Hair Care", "Styling Tools", "Women's")]) == {
        "styling tools"
    }


def test_co_purchase_matrix_counts_training_pairs_within_the_window():
    users = [UserSequence(0, "u", (0, 1, 2, 3, 4)), UserSequence(1, "v", (1, 0, 9, 9))]
    counts = co_purchase_matrix(users, 5, window=1).toarray()
    # Training parts: (0, 1, 2) and (1, 0); items 3, 4 and 9 are held-out targets.
    expected = np.zeros((5, 5))
    expected[0, 1] = expected[1, 0] = 2
    expected[1, 2] = expected[2, 1] = 1
    np.testing.assert_array_equal(counts, expected)


def test_records_are_offline_lowercase_short_and_strongest_first(mined):
    assert [row.item_id for row in mined] == list(range(len(ITEMS)))
    for row in mined:
        assert row.offline
        assert 1 <= len(row.interests) <= 4
        confidences = [x.confidence for x in row.interests]
        assert confidences == sorted(confidences, reverse=True)
        for interest in row.interests:
            assert interest.models == ("offline",)
            assert 0.0 <= interest.confidence <= 1.0
            assert interest.descriptor == interest.descriptor.lower()
            assert 2 <= len(re.findall(r"\w+", interest.descriptor)) <= 7
        keys = [x.descriptor for x in row.interests]
        assert len(set(keys)) == len(keys)
    assert "shampoos for hair" in [x.descriptor for x in mined[4].interests]
    assert not any("glossa" in x.descriptor for row in mined for x in row.interests)


def test_same_inputs_same_outputs(mined):
    assert mine_items_offline(ITEMS, USERS, 4, BUNDLED_MINILM, SETTINGS) == mined


def _held_out_changed(users: list[UserSequence]) -> list[UserSequence]:
    """Same training histories, different validation and test targets."""
    return [
        UserSequence(u.user_id, u.source_id, (*u.train, (u.items[-1] + 3) % 10, u.items[-2]))
        for u in users
    ]


def test_held_out_items_do_not_change_item_interests(mined):
    assert mine_items_offline(ITEMS, _held_out_changed(USERS), 4, BUNDLED_MINILM, SETTINGS) == mined


def test_co_purchases_propose_paired_phrases_from_training_only():
    # Item 3 (cuticle oil) is bought right after two nail polishes in training: it gets a
    # "paired with nail polish" candidate. When the same polishes are only validation or
    # test targets, it must not.
    settings = dataclasses.replace(SETTINGS, min_support=2, window=1)
    in_train = [
        UserSequence(0, "u0", (0, 3, 4, 5)),
        UserSequence(1, "u1", (2, 3, 6, 7)),
        UserSequence(2, "u2", (8, 9, 5, 4)),
    ]
    held_out = [
        UserSequence(0, "u0", (8, 9, 0, 3)),
        UserSequence(1, "u1", (4, 5, 3, 2)),
        UserSequence(2, "u2", (8, 9, 5, 4)),
    ]

    def paired(users: list[UserSequence]) -> list[str]:
        rows = mine_items_offline(ITEMS, users, 20, BUNDLED_MINILM, settings)
        return [x.descriptor for x in rows[3].interests if x.descriptor.startswith("paired")]

    assert any(d.startswith("paired with nail polish") for d in paired(in_train))
    assert paired(held_out) == []


def test_user_interests_by_hand():
    items = [
        ItemInterests(0, (Interest("a-b", 1.0, ("offline",)),), offline=True),
        ItemInterests(
            1,
            (
                Interest("c d", 0.8, ("offline",)),
                Interest("paired with e f", 0.7, ("offline",)),
                Interest("A b", 0.4, ("x",)),
            ),
        ),
        ItemInterests(2, (Interest("held out", 1.0, ("offline",)),), offline=True),
    ]
    users = [UserSequence(0, "u", (0, 1, 2, 2))]
    (row,) = mine_users_offline(users, items, 5, half_life=1.0)
    # Weights: item 0 (age 1) 0.5, item 1 (age 0) 1.0; sum 1.5. "paired with" is dropped.
    # "a b": (0.5 * 1.0 + 1.0 * 0.4) / 1.5 = 0.6; "c d": 0.8 / 1.5 = 0.5333.
    assert row.offline
    assert row.interests == (
        Interest("a-b", 0.6, ("offline",)),
        Interest("c d", 0.5333, ("offline",)),
    )
    assert mine_users_offline(users, items, 1, half_life=1.0)[0].interests == row.interests[:1]


def test_user_interests_ignore_held_out_items_and_need_every_training_item(mined):
    rows = mine_users_offline(USERS, mined, 6, half_life=3.0)
    assert rows == mine_users_offline(_held_out_changed(USERS), mined, 6, half_life=3.0)
    assert all(row.offline and 1 <= len(row.interests) <= 6 for row in rows)
    with pytest.raises(ValueError, match="user 0: item 3 has no mined interests"):
        mine_users_offline(USERS[:1], [row for row in mined if row.item_id != 3], 6, half_life=3.0)


def test_item_text_by_hand():
    item = Item(0, "A0", "Red Nail Polish", "Glossa", (NAILS,), description="Lasts all week.")
    assert item_text(item, 200) == "Red Nail Polish. Glossa. Nail Polish. Lasts all week."
    assert item_text(item, 15) == "Red Nail Polish"


def test_encoded_item_texts_give_valid_records_too(mined):
    wider = dataclasses.replace(SETTINGS, item_text_chars=80)
    rows = mine_items_offline(ITEMS, USERS, 4, BUNDLED_MINILM, wider)
    assert [row.item_id for row in rows] == list(range(len(ITEMS)))
    for row, centroid_row in zip(rows, mined, strict=True):
        assert row.offline and 1 <= len(row.interests) <= 4
        # The candidates are the same; only their scores (and so the choice) may differ.
        assert {x.descriptor for x in row.interests} & {
            x.descriptor for x in centroid_row.interests
        }


def test_candidates_need_two_brands_unless_nothing_else_is_left():
    bath = (("Beauty", "Bath"),)  # too broad: no category phrase
    items = [
        Item(0, "a", "Zesty Lemon Scrub", None, bath),
        Item(1, "b", "Nail Polish Red", "Glossa", bath),
        Item(2, "c", "Nail Polish Red", "Glossa", bath),
        Item(3, "d", "Nail Polish Blue", None, bath),  # unknown brand: counted as "nail"
    ]
    assert own_candidates(items, dataclasses.replace(SETTINGS, min_df=2)) == [
        ["lemon scrub", "zesty lemon", "zesty lemon scrub"],  # nothing shared: all its own
        ["nail polish"],  # "polish red": one brand (Glossa) twice, a product-line name
        ["nail polish"],
        ["nail polish"],
    ]
