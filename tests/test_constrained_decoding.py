"""Constrained beam search: valid, distinct, exact on small cases, deaf to sampling settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from deepinterestgr.recommender.constrained_decoding import (
    SidPrefixTree,
    constrained_beam_search,
    prefix_allowed_tokens_fn,
    rank_items,
)

# Token ids: 0 pad, 1..9 prompt words, levels a 10..13, b 14..17, c 18..20, suffix 21..22.
VOCAB = 23
PAD = 0


def random_sids(num_items: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = sorted(
        {(int(rng.integers(4)), int(rng.integers(4)), int(rng.integers(3))) for _ in range(200)}
    )
    codes = codes[:num_items]
    return np.array([[10 + a, 14 + b, 18 + c, 21] for a, b, c in codes], dtype=np.int64)


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=64, max_position_embeddings=64, pad_token_id=PAD,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 1], [9]]


def brute_force(
    model, prompt: list[int], sids: np.ndarray, k: int
) -> tuple[list[int], torch.Tensor]:
    """Score every valid SID by teacher forcing; return the top-k items and scores."""
    sequences = torch.tensor([prompt + row for row in sids.tolist()])
    with torch.no_grad():
        log_probs = model(sequences).logits.log_softmax(-1)
    n = len(prompt)
    steps = [
        log_probs[:, n - 1 + j].gather(1, sequences[:, n + j : n + j + 1]).squeeze(1)
        for j in range(sids.shape[1])
    ]
    scores = torch.stack(steps).sum(0)
    order = scores.argsort(descending=True, stable=True)[:k]
    return order.tolist(), scores[order]


def test_tree_tables_worked_by_hand():
    sids = np.array([[10, 14, 21], [10, 15, 21], [11, 14, 21], [11, 14, 22]])
    tree = SidPrefixTree.from_codes(sids)
    assert [t.tolist() for t in tree.level_tokens] == [[10, 11], [14, 15], [21, 22]]
    assert tree.children[0].tolist() == [[0, 1]]  # root -> nodes "10", "11"
    assert tree.children[1].tolist() == [[0, 1], [2, -1]]  # "10" -> 14, 15; "11" -> 14 only
    assert tree.children[2].tolist() == [[0, -1], [1, -1], [2, 3]]  # leaves are item ids
    assert tree.allowed_tokens([]) == [10, 11]
    assert tree.allowed_tokens([11]) == [14]
    assert tree.allowed_tokens([11, 14]) == [21, 22]
    assert tree.allowed_tokens([12]) == [] and tree.allowed_tokens([10, 14, 21]) == []
    assert [tree.item_of(s) for s in sids.tolist()] == [0, 1, 2, 3]
    assert tree.item_of([11, 15, 21]) == -1 and tree.item_of([10, 14]) == -1


def test_tree_rejects_items_sharing_a_sid():
    with pytest.raises(ValueError, match="item 0 shares its SID"):
        SidPrefixTree.from_codes(np.array([[10, 14], [11, 14], [10, 14]]))


def test_beams_equal_brute_force_enumeration():
    sids = random_sids(20)
    tree = SidPrefixTree.from_codes(sids)
    model = tiny_model()
    # 20 beams >= nodes at every depth, so beam search is exact here.
    result = constrained_beam_search(model, PROMPTS, tree, num_beams=20, pad_token_id=PAD)
    for row, prompt in enumerate(PROMPTS):
        items, scores = brute_force(model, prompt, sids, 20)
        assert result.item_ids[row].tolist() == items
        torch.testing.assert_close(result.scores[row], scores, atol=1e-4, rtol=1e-4)
        np.testing.assert_array_equal(result.token_ids[row].numpy(), sids[items])


def test_sampling_generation_config_is_ignored(tmp_path):
    sids = random_sids(20)
    tree = SidPrefixTree.from_codes(sids)
    model = tiny_model(seed=3)
    model.generation_config.do_sample = True
    model.generation_config.temperature = 5.0
    model.generation_config.top_k = 2
    model.generation_config.top_p = 0.3
    model.generation_config.num_beams = 1
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.generation_config.do_sample
    loaded.train()  # dropout-free here, but the search must switch to eval and back
    first = constrained_beam_search(loaded, PROMPTS, tree, num_beams=8, pad_token_id=PAD)
    second = constrained_beam_search(loaded, PROMPTS, tree, num_beams=8, pad_token_id=PAD)
    assert loaded.training
    assert torch.equal(first.item_ids, second.item_ids)
    valid = {tuple(s) for s in sids.tolist()}
    for row in range(len(PROMPTS)):
        items = first.item_ids[row].tolist()
        assert len(set(items)) == len(items) and min(items) >= 0
        assert all(tuple(t) in valid for t in first.token_ids[row].tolist())
        assert (first.scores[row][:-1] >= first.scores[row][1:]).all()


def test_same_top_k_as_transformers_generate_with_prefix_function():
    sids = random_sids(20)
    tree = SidPrefixTree.from_codes(sids)
    model = tiny_model(seed=5)
    prompts = [[1, 2, 3], [4, 5, 6]]
    ids = torch.tensor(prompts)
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=6, num_return_sequences=6,
        do_sample=False, length_penalty=0.0, max_new_tokens=4, min_new_tokens=4,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(tree, ids.shape[1]), pad_token_id=PAD,
        eos_token_id=None, temperature=None, top_k=None, top_p=None,
    )  # fmt: skip
    theirs = [tree.item_of(seq[3:].tolist()) for seq in out]
    ours = constrained_beam_search(model, prompts, tree, num_beams=6, pad_token_id=PAD)
    assert ours.item_ids.view(-1).tolist() == theirs


def test_excluded_items_never_returned_and_short_catalogue_is_padded():
    sids = random_sids(6)
    tree = SidPrefixTree.from_codes(sids)
    model = tiny_model(seed=1)
    result = constrained_beam_search(
        model, PROMPTS, tree, num_beams=8, pad_token_id=PAD, exclude=[[0, 1], [], [5]]
    )
    assert set(result.item_ids[0].tolist()) == {2, 3, 4, 5, -1}
    assert sorted(result.item_ids[1].tolist())[2:] == [0, 1, 2, 3, 4, 5]
    assert (result.item_ids[1] == -1).sum() == 2 and (result.item_ids[2] == -1).sum() == 3
    assert torch.isinf(result.scores[result.item_ids == -1]).all()


def test_exclusion_equals_brute_force_over_allowed_items_and_loses_no_beam():
    sids = random_sids(20)
    tree = SidPrefixTree.from_codes(sids)
    model = tiny_model(seed=4)
    prompt = [1, 2, 3]
    ranked, _ = brute_force(model, prompt, sids, 20)
    # Every item below the first-level token of the best item, plus the 2nd and 3rd best.
    subtree = [i for i in range(20) if sids[i, 0] == sids[ranked[0], 0]]
    exclude = sorted({*subtree, ranked[1], ranked[2]})
    allowed = [i for i in ranked if i not in exclude]
    wide = constrained_beam_search(model, [prompt], tree, 20, PAD, exclude=[exclude])
    assert wide.item_ids[0].tolist() == allowed + [-1] * len(exclude)
    # With 3 beams (approximate search) all 3 are still filled with distinct allowed items.
    narrow = constrained_beam_search(model, [prompt], tree, 3, PAD, exclude=[exclude])
    items = narrow.item_ids[0].tolist()
    assert len(set(items)) == 3 and set(items) <= set(allowed)


def test_rank_items_batches_and_keeps_input_order():
    sids = random_sids(20)
    tree = SidPrefixTree.from_codes(sids)
    model = tiny_model(seed=2)
    prompts = [[1, 2, 3], [9], [4, 5, 6, 7, 8], [2, 2], [3]]
    exclude = [[0], [1], [2], [3], [4]]
    batched = rank_items(model, prompts, tree, 10, PAD, batch_size=2, exclude=exclude)
    whole = constrained_beam_search(model, prompts, tree, 10, PAD, exclude=exclude)
    assert torch.equal(batched.item_ids, whole.item_ids)
    torch.testing.assert_close(batched.scores, whole.scores, atol=1e-4, rtol=1e-4)
