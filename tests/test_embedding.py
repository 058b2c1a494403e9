"""Item text templates, the persistent embedding cache, and the mine -> label -> embed contract."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from deepinterestgr.common import io
from deepinterestgr.common.io import Interest, Item, ItemInterests
from deepinterestgr.common.params import ClassifierParams, TextTemplateParams
from deepinterestgr.interests.labeling import label_interests, make_offline_judge
from deepinterestgr.items.embedding import (
    EmbeddingCache,
    embed_texts,
    evidence_text,
    item_text,
    item_texts,
    sentence_encoder,
)
from deepinterestgr.items.text_encoder import BUNDLED_MINILM, encode_texts, top_up

TEMPLATE = TextTemplateParams(
    parts=(
        "{title}",
        "Brand: {brand}",
        "Categories: {categories}",
        "{description}",
        "Price: ${price:.2f}",
    ),
    separator=". ",
    max_description_chars=40,
)
FULL = Item(
    0, "A1", "Red Nail Polish", "OPI", (("Beauty", "Nails"),), "Glossy long-wear colour.", 8.5
)
BARE = Item(1, "A2", "Mystery Cream")


class CountingEncoder:
    """Deterministic fake encoder that records every text it is asked to encode."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen.extend(texts)
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        rows = [np.random.default_rng(seed).normal(size=self.dim) for seed in seeds]
        out = np.asarray(rows, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_evidence_text_keeps_present_fields_in_template_order():
    assert evidence_text(FULL, TEMPLATE) == (
        "Red Nail Polish. Brand: OPI. Categories: Beauty > Nails. Glossy long-wear colour. "
        "Price: $8.50"
    )
    assert evidence_text(BARE, TEMPLATE) == "Mystery Cream"


def test_long_descriptions_are_cut_at_a_word_boundary():
    item = Item(0, "A", "T", description="word " * 30)
    text = evidence_text(item, TEMPLATE)
    assert text.endswith("word …") and len(text) < 60


def test_item_text_appends_positive_descriptors_in_order_and_the_baseline_omits_them():
    interests = (
        Interest("glossy salon manicure", 0.9, ("m",), 0.9, True),
        Interest("generic beauty", 0.8, ("m",), 0.1, False),
        Interest("chip-resistant colour", 0.5, ("m",), 0.7, True),
    )
    deep = item_text(BARE, interests, TEMPLATE, "Interests: {interests}", "; ", use_interests=True)
    assert deep == "Mystery Cream. Interests: glossy salon manicure; chip-resistant colour"
    shallow = item_text(
        BARE, interests, TEMPLATE, "Interests: {interests}", "; ", use_interests=False
    )
    assert shallow == "Mystery Cream"
    # unlabelled interests (positive None) never enter the text
    assert (
        item_text(BARE, (Interest("x y", 0.5),), TEMPLATE, "{interests}", "; ", True)
        == "Mystery Cream"
    )


def test_only_the_changed_item_is_re_encoded_and_the_cache_survives_a_restart(tmp_path):
    texts = ["alpha item", "beta item", "gamma item"]
    encoder = CountingEncoder()
    first = embed_texts(texts, encoder, EmbeddingCache(tmp_path), "fake", True, batch_size=2)
    assert (first.encoded, first.cached) == (3, 0) and first.vectors.shape == (3, 8)

    encoder.seen.clear()
    changed = ["alpha item", "beta item, new descriptor", "gamma item"]
    second = embed_texts(changed, encoder, EmbeddingCache(tmp_path), "fake", True, batch_size=2)
    assert encoder.seen == ["beta item, new descriptor"]
    assert (second.encoded, second.cached) == (1, 2)
    np.testing.assert_array_equal(second.vectors[[0, 2]], first.vectors[[0, 2]])

    # another encoder name is another key: nothing is served across encoders
    encoder.seen.clear()
    other = embed_texts(texts, encoder, EmbeddingCache(tmp_path), "other", True, batch_size=2)
    assert other.encoded == 3 and len(encoder.seen) == 3


def test_duplicate_texts_are_encoded_once():
    encoder = CountingEncoder()
    result = embed_texts(["same", "same", "other"], encoder, EmbeddingCache(None), "fake", True, 8)
    assert sorted(encoder.seen) == ["other", "same"] and result.encoded == 2
    np.testing.assert_array_equal(result.vectors[0], result.vectors[1])


def test_mine_label_embed_contract(tmp_path):
    """Mine-format files -> label library -> label files -> embed library -> embed files."""
    items = [
        Item(i, f"S{i}", f"Product{i} Widget{i}", None, (("Cat", f"Sub{i % 3}"),))
        for i in range(12)
    ]
    mined = [
        ItemInterests(
            i,
            (
                Interest(f"product{i} widget{i} use", 0.9, ("a", "b")),
                Interest("daily routine", 0.6, ("a",)),
                Interest(f"widget{i} care", 0.5, ("b",)),
            ),
        )
        for i in range(12)
        if i != 5  # an item the miner produced nothing for
    ]
    io.write_items(tmp_path / "download/items.jsonl", items)
    io.write_item_interests(tmp_path / "mine/items.jsonl", mined)

    read_items = io.read_items(tmp_path / "download/items.jsonl")
    rows = io.align_item_interests(
        io.read_item_interests(tmp_path / "mine/items.jsonl"), len(read_items), "mine"
    )
    encoder = CountingEncoder(dim=16)
    cache = EmbeddingCache(tmp_path / "cache")

    def embed(texts):
        return embed_texts(texts, encoder, cache, "fake", True, 4).vectors

    classifier = ClassifierParams("logistic_regression", 1.0, 500, 0.1, 31)
    result = label_interests(
        rows,
        [evidence_text(i, TEMPLATE) for i in read_items],
        embed,
        make_offline_judge(0.5, 0.3),
        sample_size=33,
        test_fraction=0.3,
        classifier=classifier,
        threshold=0.5,
        empty_quality=0.0,
        ece_bins=10,
        seed=0,
    )
    io.write_item_interests(tmp_path / "label/items.jsonl", result.rows)
    io.save_array(tmp_path / "label/quality.npy", result.quality)

    labelled = io.read_item_interests(tmp_path / "label/items.jsonl")
    quality = io.load_array(tmp_path / "label/quality.npy")
    assert [r.item_id for r in labelled] == list(range(12))
    assert quality.shape == (12,) and quality.dtype == np.float32 and quality[5] == 0.0
    assert all(i.p_positive is not None for r in labelled for i in r.interests)

    texts = item_texts(
        read_items, [r.interests for r in labelled], TEMPLATE, "Interests: {interests}", "; ", True
    )
    out = embed_texts(texts, encoder, cache, "fake", True, 4)
    io.save_array(tmp_path / "embed/embeddings.npy", out.vectors)
    io.write_jsonl(
        tmp_path / "embed/texts.jsonl", ({"item_id": i, "text": t} for i, t in enumerate(texts))
    )

    matrix = io.load_array(tmp_path / "embed/embeddings.npy")
    records = [r for _, r in io.iter_jsonl(tmp_path / "embed/texts.jsonl")]
    assert matrix.shape == (12, 16) and matrix.dtype == np.float32
    assert [r["item_id"] for r in records] == list(range(12))
    for row, record in zip(labelled, records, strict=True):
        positives = [i.descriptor for i in row.interests if i.positive]
        assert record["text"].startswith(f"Product{row.item_id} Widget{row.item_id}")
        positions = [record["text"].find(d) for d in positives]
        assert all(p >= 0 for p in positions) and positions == sorted(positions)
        for negative in (i.descriptor for i in row.interests if not i.positive):
            assert negative not in record["text"]
    assert any(i.positive for r in labelled for i in r.interests)
    assert records[5]["text"] == evidence_text(read_items[5], TEMPLATE)


def test_item_texts_needs_one_interest_list_per_item():
    with pytest.raises(ValueError, match="2 items but 1 interest lists"):
        item_texts([FULL, BARE], [()], TEMPLATE, "{interests}", "; ", True)


def test_a_text_gets_the_same_vector_whatever_it_is_encoded_with():
    """The bundled encoder, for real: a text alone, among longer and shorter texts, or in
    another order gives bit-identical rows (texts are batched only with equal token lengths;
    padding would change the last bits)."""
    texts = ["matte red lipstick", "a long lasting matte red lipstick for a whole evening out"]
    texts += ["cream", "gentle foaming cleanser for oily skin", "matte red lipstick, travel size"]
    together = encode_texts(texts, BUNDLED_MINILM, batch_size=8)
    alone = np.concatenate([encode_texts([t], BUNDLED_MINILM, batch_size=8) for t in texts])
    reversed_order = encode_texts(texts[::-1], BUNDLED_MINILM, batch_size=2)[::-1]
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together, reversed_order)


def test_a_text_in_a_batch_of_one_two_or_many_gets_the_same_vector():
    """Short texts of few token lengths, encoded all together and in random small subsets
    (batches of a handful of rows: the CPU kernels' other path, before top-up)."""
    adjectives = ("matte", "glossy", "long lasting", "gentle", "fragrance free", "vegan", "travel")
    nouns = ("lipstick", "cleanser", "night cream", "eye shadow palette", "hair oil", "toner")
    texts = [f"{a} {n}" for a in adjectives for n in nouns]
    together = encode_texts(texts, BUNDLED_MINILM, batch_size=64)
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 5, 9, 17):
        chosen = sorted(rng.choice(len(texts), size=size, replace=False).tolist())
        subset = encode_texts([texts[i] for i in chosen], BUNDLED_MINILM, batch_size=64)
        np.testing.assert_array_equal(subset, together[chosen])


def test_top_up_repeats_a_short_batch_and_keeps_a_long_one():
    assert top_up(["a", "b", "c"], 8) == ["a", "b", "c", "a", "b", "c", "a", "b"]
    assert top_up(["a"] * 9, 8) == ["a"] * 9


def test_a_warm_cache_gives_exactly_the_vectors_of_a_cold_one(tmp_path):
    texts = [
        f"{colour} lipstick with a {finish} finish{tail}"
        for colour in ("red", "pink", "nude")
        for finish in ("matte", "glossy satin")
        for tail in ("", " for evenings out")
    ] + ["cream"]  # 13 texts of several token lengths
    encode = sentence_encoder(BUNDLED_MINILM, normalize=True, batch_size=4)
    cold = embed_texts(texts, encode, EmbeddingCache(None), BUNDLED_MINILM, True, 4)
    warm_cache = EmbeddingCache(tmp_path)
    embed_texts(texts[::3], encode, warm_cache, BUNDLED_MINILM, True, 4)  # an earlier run
    warm = embed_texts(texts, encode, EmbeddingCache(tmp_path), BUNDLED_MINILM, True, 4)
    assert warm.cached == len(set(texts[::3])) and warm.encoded == len(set(texts)) - warm.cached
    np.testing.assert_array_equal(warm.vectors, cold.vectors)
