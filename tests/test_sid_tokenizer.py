"""The SID tokenizer keeps SID tokens whole, saves and loads with its own class."""

from __future__ import annotations

import numpy as np
import pytest

from deepinterestgr.recommender.prompt import TASK_TOKENS
from deepinterestgr.recommender.sid_tokenizer import (
    SEP,
    SidTokenizer,
    build_tokenizer,
    extend_pretrained_tokenizer,
    level_sizes_of,
    load_tokenizer,
    sid_token_ids,
    sid_tokens,
)

CODES = np.array([[1, 2, 0], [0, 2, 1], [1, 0, 0]])
TEXTS = ["Salon quality manicure at home", "salon glow; manicure", "rare"]


def test_level_sizes_and_sid_tokens():
    assert level_sizes_of(CODES) == [2, 3, 2]
    assert sid_tokens([2, 1]) == ["<a_0>", "<a_1>", "<b_0>"]
    with pytest.raises(ValueError):
        level_sizes_of(np.zeros((0, 3), dtype=np.int64))


def test_vocabulary_order_and_word_threshold():
    tokenizer = build_tokenizer(level_sizes_of(CODES), TEXTS, max_words=2, min_count=2)
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in ("<pad>", "<eos>", "<unk>", SEP)] == [0, 1, 2, 3]
    assert vocab["<task_history>"] == 4
    assert vocab["<a_0>"] == 4 + len(TASK_TOKENS)
    # "manicure" and "salon" are seen twice; "rare" once (below min_count); at most 2 words.
    assert {"manicure", "salon"} <= set(vocab) and "rare" not in vocab and "glow" not in vocab
    assert len(tokenizer) == 4 + len(TASK_TOKENS) + 7 + 2


def test_sid_tokens_stay_atomic_next_to_text():
    tokenizer = build_tokenizer(level_sizes_of(CODES), TEXTS, max_words=100, min_count=1)
    text = "<task_history><a_1><b_2><c_0>Salon; glow<sep><a_0>"
    assert tokenizer.tokenize(text) == [
        "<task_history>", "<a_1>", "<b_2>", "<c_0>", "salon", ";", "glow", SEP, "<a_0>",
    ]  # fmt: skip
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[1:4] == ["<a_1>", "<b_2>", "<c_0>"]
    assert tokenizer.tokenize("unseen")[0] == "<unk>"


def test_save_and_load_with_the_explicit_class(tmp_path):
    tokenizer = build_tokenizer(level_sizes_of(CODES), TEXTS, max_words=100, min_count=1)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is SidTokenizer
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.tokenize("<a_1><b_2>salon") == ["<a_1>", "<b_2>", "salon"]
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.sep_token_id) == (0, 1, 3)
    np.testing.assert_array_equal(sid_token_ids(loaded, CODES), sid_token_ids(tokenizer, CODES))


def test_sid_token_ids_maps_codes_and_names_a_missing_token():
    tokenizer = build_tokenizer([2, 3, 2], [], max_words=0, min_count=1)
    ids = sid_token_ids(tokenizer, CODES)
    assert tokenizer.convert_ids_to_tokens(ids[0].tolist()) == ["<a_1>", "<b_2>", "<c_0>"]
    with pytest.raises(ValueError, match="<a_2>"):
        sid_token_ids(tokenizer, np.array([[2, 0, 0]]))


def test_extending_a_pretrained_tokenizer_adds_whole_sid_tokens(tmp_path):
    # A stand-in "pretrained" tokenizer: words only, no SID, task or separator tokens.
    base = build_tokenizer([], ["salon glow manicure"], max_words=10, min_count=1)
    base.save_pretrained(tmp_path / "base")
    extended = extend_pretrained_tokenizer(tmp_path / "base", [2, 3, 2])
    assert len(extended) == len(base) + 7
    assert extended.tokenize("glow<a_1><b_2><c_1> salon") == [
        "glow", "<a_1>", "<b_2>", "<c_1>", "salon",
    ]  # fmt: skip
    extended.save_pretrained(tmp_path / "extended")
    loaded = load_tokenizer(tmp_path / "extended")
    np.testing.assert_array_equal(sid_token_ids(loaded, CODES), sid_token_ids(extended, CODES))
