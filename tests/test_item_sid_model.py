"""The item-level SID model: a proper distribution over catalogue items, the same numbers on
every path (TRL's per-token fields, full logits, beam search), a round trip through
``save_pretrained``, and a tiny model that learns a hand-made catalogue."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from deepinterestgr.common.io import UserSequence
from deepinterestgr.common.params import EvaluateParams
from deepinterestgr.evaluation.generative import validation_ranker
from deepinterestgr.evaluation.metrics import ranking_metrics, target_ranks
from deepinterestgr.evaluation.ranking import split_examples
from deepinterestgr.items.semantic_ids import add_collision_suffix
from deepinterestgr.recommender.constrained_decoding import SidPrefixTree, constrained_beam_search
from deepinterestgr.recommender.generative_model import (
    build_item_model,
    build_token_model,
    load_recommender,
    save_recommender,
)
from deepinterestgr.recommender.item_sid_model import IGNORE
from deepinterestgr.recommender.prompt import PromptSpec
from deepinterestgr.recommender.sft_data import build_encoder
from deepinterestgr.recommender.sft_training import train_sft
from deepinterestgr.recommender.sid_tokenizer import build_tokenizer, level_sizes_of, sid_token_ids
from deepinterestgr.recommender.trainer_hooks import add_plain_lm_head

# Six items over a 3 x 3 x 2 code space plus suffix; (1, 0, 0) is shared by items 2 and 3.
CODES = np.array(
    [[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1], [2, 2, 1, 0], [0, 2, 1, 0]]
)
SIZES = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
         "intermediate_size": 32, "dropout": 0.0, "item_id_embeddings": True,
         "node_embeddings": True}  # fmt: skip


def tiny(texts=("red shoe", "blue shoe lace"), codes=CODES, max_items=8, seed=0):
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(level_sizes_of(codes), list(texts), 20, 1)
    model = build_item_model(SIZES, tokenizer, codes, max_items)
    return model.eval(), tokenizer, sid_token_ids(tokenizer, codes)


def task(tokenizer, name="history"):
    return tokenizer.convert_tokens_to_ids(f"<task_{name}>")


def item_log_prob(model, prompt, sid):
    ids = torch.tensor([[*prompt, *sid]])
    labels = ids.clone()
    labels[:, : len(prompt)] = IGNORE
    with torch.no_grad():
        out = model(ids, labels=labels, fused_lm_head=True)
    return float(out.log_probs.sum())


def test_item_probabilities_sum_to_one_and_invalid_sids_get_no_mass():
    model, tokenizer, sid = tiny()
    prompt = [task(tokenizer), *sid[0], *sid[4]]
    total = sum(np.exp(item_log_prob(model, prompt, row)) for row in sid.tolist())
    assert total == pytest.approx(1.0, abs=1e-5)

    # Every token that continues no catalogue SID has probability zero at every level.
    ids = torch.tensor([[*prompt, *sid[3]]])
    with torch.no_grad():
        log_p = model(ids).logits.log_softmax(-1)[0]
    start = len(prompt) - 1  # position predicting the next item's first token
    tree = SidPrefixTree.from_codes(sid)
    for depth in range(sid.shape[1]):
        allowed = set(tree.allowed_tokens(sid[3][:depth].tolist()))
        probs = log_p[start + depth].exp()
        assert set(probs.nonzero().squeeze(-1).tolist()) == allowed
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


def test_trl_fields_match_full_logits_for_sid_and_text_labels():
    model, tokenizer, sid = tiny()
    words = tokenizer(["blue shoe lace"], add_special_tokens=False)["input_ids"][0]
    sep, eos = tokenizer.sep_token_id, tokenizer.eos_token_id
    rows = [  # (input ids, index of the first labelled token)
        ([task(tokenizer), *sid[1], *sid[2], *sid[5]], 5),  # history: items 2 and 3 labelled
        ([task(tokenizer, "sid_to_interests"), *sid[4], sep, *words, eos], 6),
        ([task(tokenizer, "interests_to_sid"), *words, sep, *sid[3]], len(words) + 2),
    ]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full_like(ids, IGNORE)
    for r, (row, first) in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        labels[r, first : len(row)] = torch.tensor(row[first:])
    mask = (ids != tokenizer.pad_token_id).long()
    with torch.no_grad():
        fused = model(ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        full = model(ids, attention_mask=mask).logits.log_softmax(-1)[:, :-1]
    expected = full.gather(2, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    labelled = labels[:, 1:] != IGNORE
    torch.testing.assert_close(fused.log_probs[labelled], expected[labelled])
    assert torch.equal(fused.label_mask, labelled)
    assert fused.loss == pytest.approx(-float(expected[labelled].mean()), rel=1e-5)
    assert (fused.entropy[labelled] >= 0).all() and (fused.log_probs[~labelled] == 0).all()

    # Left padding reads the same prompt.
    left = torch.tensor([[tokenizer.pad_token_id] * 3 + rows[0][0]])
    left_labels = torch.tensor([[IGNORE] * 8 + rows[0][0][5:]])
    with torch.no_grad():
        padded = model(left, labels=left_labels, fused_lm_head=True).log_probs.sum()
    torch.testing.assert_close(padded, fused.log_probs[0].sum())


def test_beam_search_with_every_beam_returns_the_catalogue_by_exact_probability():
    model, tokenizer, sid = tiny()
    prompt = [task(tokenizer), *sid[2], *sid[0]]
    tree = SidPrefixTree.from_codes(sid)
    beams = constrained_beam_search(model, [prompt], tree, len(sid), tokenizer.pad_token_id)
    exact = np.array([item_log_prob(model, prompt, row) for row in sid.tolist()])
    assert sorted(beams.item_ids[0].tolist()) == list(range(len(sid)))
    np.testing.assert_allclose(beams.scores[0].numpy(), exact[beams.item_ids[0].numpy()], atol=1e-5)
    assert (np.diff(beams.scores[0].numpy()) <= 1e-6).all()

    # Fewer beams, history excluded: distinct valid items, none from the history.
    beams = constrained_beam_search(
        model, [prompt, prompt[:5]], tree, 3, tokenizer.pad_token_id, exclude=[[2, 0], [2]]
    )
    for row, seen in zip(beams.item_ids.tolist(), ([2, 0], [2]), strict=True):
        assert len(set(row)) == 3 and not set(row) & set(seen) and min(row) >= 0
    for row_tokens, row_items in zip(
        beams.token_ids.tolist(), beams.item_ids.tolist(), strict=True
    ):
        assert [tree.item_of(t) for t in row_tokens] == row_items


def test_item_model_round_trips_through_save_pretrained(tmp_path):
    model, tokenizer, sid = tiny()
    spec = PromptSpec("history", 7, 8)
    save_recommender(tmp_path / "model", model, tokenizer, spec)
    loaded = load_recommender(tmp_path / "model")
    assert loaded.spec == spec and type(loaded.model).__name__ == "ItemSidModel"
    assert torch.equal(loaded.model.sid_token_ids, torch.from_numpy(sid))
    ids = torch.tensor([[task(tokenizer), *sid[1], *sid[3], *sid[2][:2]]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, model(ids).logits)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert again.config.level_sizes == level_sizes_of(CODES)


def test_a_prompt_longer_than_the_model_reads_is_an_error():
    model, tokenizer, sid = tiny(max_items=2)
    ids = torch.tensor([[task(tokenizer), *sid[0], *sid[1], *sid[2]]])
    with pytest.raises(ValueError, match="3 items, more than the model's max_items"):
        model(ids)


def test_plain_head_gives_the_log_probabilities_of_the_full_logits():
    _, tokenizer, sid = tiny()
    config = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 2, "intermediate_size": 32,
              "max_position_embeddings": 64}  # fmt: skip
    model = build_token_model("llama", config, tokenizer).eval()
    ids = torch.tensor([[task(tokenizer), *sid[0], *sid[4], *sid[1]]])
    labels = ids.clone()
    labels[:, :5] = IGNORE
    with torch.no_grad():
        full = model(ids).logits.log_softmax(-1)[0, :-1]
    add_plain_lm_head(model)
    with torch.no_grad():
        out = model(ids, labels=labels, fused_lm_head=True)
    expected = full.gather(1, ids[0, 1:, None]).squeeze(1)
    torch.testing.assert_close(out.log_probs[0, 4:], expected[4:])
    assert (out.log_probs[0, :4] == 0).all() and out.is_top1.dtype == torch.bool


# ------------------------------------------------------------------ learning


def successor_catalogue():
    """30 items, some sharing codes; every user walks the cycle i -> (i + 7) mod 30, so the next
    item is a function of the last one and a model that learns it ranks the target first."""
    # Items 3k and 3k+2 share their three codes: the suffix tells them apart.
    codes = add_collision_suffix(np.array([[i // 10, (i // 3) % 4, i % 2] for i in range(30)]))
    users = []
    for u in range(90):
        walk = [u % 30]
        for _ in range(5 + u % 3):
            walk.append((walk[-1] + 7) % 30)
        users.append(UserSequence(u, f"u{u}", tuple(walk)))
    return codes, users


@pytest.mark.slow
def test_a_tiny_item_model_learns_a_hand_made_catalogue_through_trl(tmp_path, sft_params):
    codes, users = successor_catalogue()
    model, tokenizer, sid = tiny(texts=(), codes=codes, max_items=9)
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    spec = PromptSpec("history", 8, 8)
    encoder = build_encoder(tokenizer, sid, spec, [""] * len(codes), [""] * len(users))
    train = encoder.sequence_examples(users, "history")
    protocol = EvaluateParams(ks=(10,), exclude_history=True, num_beams=10, batch_size=64)
    validate = validation_ranker(encoder.prompts, users[:30], tokenizer.pad_token_id, 10, protocol)
    config = sft_params(
        {"num_train_epochs": 25, "per_device_train_batch_size": 16, "learning_rate": 1e-2,
         "eval_strategy": "epoch", "save_strategy": "epoch", "logging_strategy": "epoch",
         "disable_tqdm": True, "bf16": False, "weight_decay": 0.0,
         "activation_checkpointing": False},
        metric="ndcg@10", patience=30, backbone="item",
    )  # fmt: skip
    result = train_sft(
        model, tokenizer, train, encoder.validation_examples(users[:30]), config, 0, validate,
        tmp_path / "checkpoints", tmp_path / "live",
    )  # fmt: skip
    assert result.log_prob_head == "model"
    unchanged = [n for n, p in result.model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    assert max(row["ndcg@10"] for row in result.evaluations) == result.best_metric

    test = split_examples(users, "test")
    writer = encoder.prompts
    prompts = [writer.prompt(u.user_id, h) for u, h in zip(users, test.histories, strict=True)]
    beams = constrained_beam_search(
        result.model, prompts, SidPrefixTree.from_codes(sid), 10, tokenizer.pad_token_id,
        exclude=test.histories,
    )  # fmt: skip
    metrics = ranking_metrics(target_ranks(beams.item_ids.numpy(), test.targets), [1, 10])
    assert metrics["hr@10"] == 1.0, metrics


def test_every_catalogue_sid_is_reachable_and_nothing_else():
    model, tokenizer, sid = tiny()
    prompt = [task(tokenizer), *sid[5]]
    level_tokens = [sorted(set(column)) for column in sid.T.tolist()]
    valid = {tuple(row) for row in sid.tolist()}
    for combo in itertools.product(*level_tokens):
        ids = torch.tensor([[*prompt, *combo]])
        with torch.no_grad():
            log_p = model(ids).logits.log_softmax(-1)[0, len(prompt) - 1 : -1]
        total = float(log_p.gather(1, torch.tensor(combo)[:, None]).sum())
        assert np.isfinite(total) == (combo in valid)
