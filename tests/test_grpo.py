"""GRPO on a tiny model: the rollout gives distinct valid SIDs and one step moves every weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from deepinterestgr.common.io import UserSequence
from deepinterestgr.common.params import GrpoParams, RewardWeights, load
from deepinterestgr.items.semantic_ids import format_sid
from deepinterestgr.recommender.constrained_decoding import SidPrefixTree
from deepinterestgr.recommender.generative_model import build_item_model, build_token_model
from deepinterestgr.recommender.grpo import (
    RLPrompt,
    build_rollout,
    curve_summary,
    grpo_config,
    rl_prompts,
    top_candidates,
    train_grpo,
)
from deepinterestgr.recommender.prompt import TASK_TOKENS
from deepinterestgr.recommender.rewards import parse_completion, trl_reward_functions
from deepinterestgr.recommender.sid_tokenizer import (
    build_tokenizer,
    level_sizes_of,
    sid_token_ids,
)

ROOT = Path(__file__).resolve().parents[1]

# 19 items: 3 RQ levels of sizes 3, 3, 2 and one collision (item 18 shares item 0's codes).
CODES = np.array(
    [(a, b, c, 0) for a in range(3) for b in range(3) for c in range(2)] + [(0, 0, 0, 1)],
    dtype=np.int64,
)
CATALOGUE = {tuple(row) for row in CODES.tolist()}
G = 4


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(level_sizes_of(CODES), texts=[], max_words=0, min_count=1)


@pytest.fixture(scope="module")
def tree(tokenizer):
    return SidPrefixTree.from_codes(sid_token_ids(tokenizer, CODES))


def saved_tiny_model(tokenizer, folder, backbone="token"):
    """A tiny Qwen2 (or item-level model) saved and reloaded: TRL builds the KL reference model
    from its path."""
    torch.manual_seed(0)
    if backbone == "item":
        sizes = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            dropout=0.1,
            item_id_embeddings=True,
        )
        build_item_model(sizes, tokenizer, CODES, max_items=8).save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder)
    config = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    build_token_model("qwen2", config, tokenizer).save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder)


def prompt_of(tokenizer):
    sids = sid_token_ids(tokenizer, CODES)
    task = tokenizer.convert_tokens_to_ids(TASK_TOKENS["history"])
    return lambda _user, history: [task, *sids[list(history)].reshape(-1).tolist()]


def users():
    sequences = [(1, 5, 7, 3, 9, 2), (4, 8, 0, 11, 6, 5), (2, 2, 3, 4), (7, 12, 3, 1), (6, 9)]
    return [UserSequence(u, f"u{u}", items) for u, items in enumerate(sequences)]


# The project's trainer settings, with a tiny run's batch, rate and length.
CONFIG = GrpoParams(
    max_prompts=0,
    max_minutes=5.0,
    weights=RewardWeights(exact=1.0, valid=0.1, prefix=0.1, quality=0.5, rank=0.1),
    lora={},
    trainer={
        **load("grpo", ROOT / "params.yaml").trainer,
        "num_generations": G,
        "per_device_train_batch_size": 2 * G,
        "learning_rate": 1e-2,
        "num_train_epochs": 1.0,
        "max_steps": 1,
        "beta": 0.01,
        "disable_tqdm": True,
    },
)


def test_prompts_come_from_the_training_part_only(tokenizer):
    quality = np.linspace(0.0, 0.9, len(CODES)).astype(np.float32)
    rng = np.random.default_rng(0)
    made = rl_prompts(users(), prompt_of(tokenizer), CODES, quality, 0, rng)
    # user 2 trains on (2, 2): its target 2 is in its history; user 4 has no training part
    assert made.skipped_repeat == 1 and made.skipped_short == 1
    assert len(made.prompts) == 3
    first = made.prompts[0]  # user 0: train (1, 5, 7, 3), target 3, history (1, 5, 7)
    assert first.target == format_sid(CODES[3].tolist())
    assert first.quality == pytest.approx(quality[3])
    assert first.exclude == (1, 5, 7)
    assert len(first.prompt_ids) == 1 + 3 * CODES.shape[1]
    assert len(rl_prompts(users(), prompt_of(tokenizer), CODES, quality, 2, rng).prompts) == 2


def test_rollout_groups_are_distinct_valid_sids_outside_the_history(tokenizer, tree, tmp_path):
    model = saved_tiny_model(tokenizer, tmp_path / "sft")
    model.train()
    prompts = rl_prompts(
        users(), prompt_of(tokenizer), CODES, np.zeros(len(CODES)), 0, np.random.default_rng(0)
    ).prompts
    dataset, rollout = build_rollout(prompts, tokenizer, tree)

    class Trainer:  # what the rollout reads from TRL's trainer
        num_generations = G
        num_generations_eval = G
        accelerator = type("Accelerator", (), {"unwrap_model": staticmethod(lambda m: m)})()

    Trainer.model = model
    batch = [key for key in dataset["prompt"][:3] for _ in range(G)]
    out = rollout(batch, Trainer())
    assert out["beam_rank"] == list(range(G)) * 3
    assert len(out["prompt_ids"]) == len(out["completion_ids"]) == 3 * G
    assert model.training  # training mode restored after the beam search
    texts = tokenizer.batch_decode(out["completion_ids"], skip_special_tokens=True)
    for k, prompt in enumerate(prompts[:3]):
        group = [parse_completion(t) for t in texts[k * G : (k + 1) * G]]
        assert all(sid in CATALOGUE for sid in group), group
        assert len(set(group)) == G, group
        history = {tuple(CODES[i].tolist()) for i in prompt.exclude}
        assert not history & set(group)


def test_a_long_exclusion_list_still_leaves_a_full_group(tokenizer, tree, tmp_path):
    model = saved_tiny_model(tokenizer, tmp_path / "sft")
    allowed = {2, 9, 13, 17}  # exactly G items left: G beams alone would end short
    exclude = tuple(i for i in range(len(CODES)) if i not in allowed)
    prompt = RLPrompt(
        tuple(prompt_of(tokenizer)(0, (1, 5))), format_sid(CODES[2].tolist()), 0.5, exclude
    )
    (group,) = top_candidates(model, [prompt], tree, G, tokenizer.pad_token_id)
    items = {tree.item_of(sid) for sid in group}
    assert items == allowed


@pytest.mark.slow  # a full TRL trainer: a few seconds of CPU
@pytest.mark.parametrize("backbone", ["token", "item"])
def test_one_grpo_step_changes_every_parameter(tokenizer, tree, tmp_path, backbone):
    model = saved_tiny_model(tokenizer, tmp_path / "sft", backbone)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = [
        RLPrompt(tuple(prompt_of(tokenizer)(0, history)), format_sid(CODES[t].tolist()), 0.8, ())
        for history, t in [((1, 5), 7), ((4, 8, 0), 11)]
    ]
    dataset, rollout = build_rollout(prompts, tokenizer, tree)
    trained, outcome = train_grpo(
        model,
        tokenizer,
        dataset,
        rollout,
        trl_reward_functions(CATALOGUE, num_levels=3),
        CONFIG,
        0,
        tmp_path / "scratch",
        live_dir=tmp_path / "live",
    )
    assert outcome.steps == 1
    unchanged = [n for n, p in trained.named_parameters() if torch.equal(before[n], p.detach())]
    # embedding rows of tokens that never occur get no gradient, but every matrix must move
    assert not [n for n in unchanged if "embed" not in n], unchanged
    assert set(curve_summary(outcome.history)["reward"]) == {"start", "end"}
    curves = tmp_path / "live" / "plots" / "metrics" / "train"
    for key in ("loss", "kl", "reward", "rewards/exact/mean", "rewards/quality/mean"):
        assert (curves / f"{key}.tsv").read_text().startswith("step\t"), key


def test_the_grpo_config_carries_the_params_yaml_values_as_written(tmp_path):
    config = load("grpo", ROOT / "params.yaml")
    args = grpo_config(config, 7, tmp_path)
    for key, value in config.trainer.items():
        assert getattr(args, key) == value, key
    # Worked by hand from params.yaml: 8 prompts of G = 8 beams per step, two passes, TRL's
    # own KL and clip settings, and the reward weights in TERMS order.
    assert (args.num_generations, args.per_device_train_batch_size) == (8, 64)
    assert (args.learning_rate, args.num_train_epochs, args.max_steps) == (1e-4, 2.0, -1)
    assert (args.beta, args.epsilon, args.loss_type, args.scale_rewards) == (
        1e-3, 0.2, "grpo", "group"
    )  # fmt: skip
    assert args.reward_weights == [1.0, 0.1, 0.1, 0.5, 0.0]
    assert (args.seed, args.data_seed, args.report_to) == (7, 7, [])
