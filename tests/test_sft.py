"""SFT examples are built from training histories only; a tiny model trains and round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepinterestgr.common.io import Interest, Item, ItemInterests, UserSequence
from deepinterestgr.common.params import load
from deepinterestgr.recommender.generative_model import (
    build_pretrained_lora_model,
    build_token_model,
    load_recommender,
    save_recommender,
)
from deepinterestgr.recommender.prompt import TASKS, PromptSpec, PromptWriter
from deepinterestgr.recommender.sft_data import (
    IGNORE,
    SftEncoder,
    SftExample,
    build_encoder,
    item_text,
    mix_tasks,
    sample_users,
)
from deepinterestgr.recommender.sft_training import sft_config, train_sft
from deepinterestgr.recommender.sid_tokenizer import (
    build_tokenizer,
    extend_pretrained_tokenizer,
    level_sizes_of,
    sid_token_ids,
)

ROOT = Path(__file__).resolve().parents[1]

# Item i's SID tokens are (100 + i, 200 + i): two tokens per item keep the hand checks short.
SIDS = np.array([[100 + i, 200 + i] for i in range(10)], dtype=np.int64)
TASK_IDS = {task: k for k, task in enumerate(TASKS)}  # history 0, interests_to_sid 1, ...
SEP, EOS = 7, 8


def encoder(max_history: int, task: str = "history") -> SftEncoder:
    writer = PromptWriter(
        sid_ids=SIDS,
        task_ids=TASK_IDS,
        sep_id=SEP,
        spec=PromptSpec(task, max_history, 8),
        user_text_ids=[[60, 61]],
    )
    return SftEncoder(prompts=writer, eos_id=EOS, item_text_ids=[[50, 51], [], *([[52]] * 8)])


def sid(item: int) -> list[int]:
    return [100 + item, 200 + item]


def test_history_examples_cover_every_training_target_once_and_never_valid_or_test():
    # train = 1, 2, 3, 4, 5; valid 6; test 7.
    user = UserSequence(0, "u", (1, 2, 3, 4, 5, 6, 7))
    examples = encoder(max_history=2).sequence_examples([user], "history")
    # Windows of at most 3 items ending at the last training item: [3 4 5], [1 2 3].
    assert examples[0].input_ids == [0, *sid(3), *sid(4), *sid(5)]
    assert examples[0].labels == [IGNORE] * 3 + sid(4) + sid(5)
    assert examples[1].input_ids == [0, *sid(1), *sid(2), *sid(3)]
    assert examples[1].labels == [IGNORE] * 3 + sid(2) + sid(3)
    assert len(examples) == 2
    targets = [t for e in examples for t in e.labels if t != IGNORE]
    assert sorted(targets) == sorted(sid(2) + sid(3) + sid(4) + sid(5))


def test_interest_history_examples_and_prompts_carry_the_user_text():
    user = UserSequence(0, "u", (1, 2, 6, 7))
    coder = encoder(max_history=5, task="interests_history")
    (example,) = coder.sequence_examples([user], "interests_history")
    assert example.input_ids == [TASK_IDS["interests_history"], 60, 61, SEP, *sid(1), *sid(2)]
    assert example.labels == [IGNORE] * 6 + sid(2)
    assert coder.prompts.prompt(0, user.test_history) == [3, 60, 61, SEP, *sid(1), *sid(2), *sid(6)]


def test_validation_examples_take_loss_on_the_validation_target_only():
    user = UserSequence(0, "u", (1, 2, 3, 4, 5))
    (example,) = encoder(max_history=2).validation_examples([user])
    assert example.input_ids == [0, *sid(2), *sid(3), *sid(4)]
    assert example.labels == [IGNORE] * 5 + sid(4)


def test_alignment_examples_in_both_directions_skip_items_without_text():
    coder = encoder(max_history=2)
    to_sid = coder.interests_to_sid_examples()
    to_text = coder.sid_to_interests_examples()
    assert len(to_sid) == len(to_text) == 9  # item 1 has no text
    assert to_sid[0] == SftExample([1, 50, 51, SEP, *sid(0)], [IGNORE] * 4 + sid(0))
    assert to_text[0] == SftExample([2, *sid(0), SEP, 50, 51, EOS], [IGNORE] * 4 + [50, 51, EOS])


def test_item_text_drops_negative_interests_and_keeps_unlabelled_ones():
    item = Item(0, "s", "Nail Polish")
    interests = ItemInterests(
        0,
        (
            Interest("salon manicure", 0.9, positive=True),
            Interest("generic", 0.5, positive=False),
            Interest("gift idea", 0.4),
        ),
    )
    assert item_text(item, interests, use_title=True) == "Nail Polish; salon manicure; gift idea"
    assert item_text(item, interests, use_title=False) == "salon manicure; gift idea"


def test_mixture_repeats_and_samples_by_weight():
    rows = [SftExample([k], [k]) for k in range(4)]
    mixed = mix_tasks(
        {"a": rows, "b": rows, "c": rows}, {"a": 2.5, "b": 0.0}, np.random.default_rng(0)
    )
    assert len(mixed) == 10
    assert mixed[:8] == rows * 2 and all(row in rows for row in mixed[8:])
    users = [UserSequence(i, "u", (1, 2, 3)) for i in range(5)]
    assert [u.user_id for u in sample_users(users, 0, np.random.default_rng(0))] == [0, 1, 2, 3, 4]
    chosen = sample_users(users, 3, np.random.default_rng(0))
    assert len(chosen) == 3 and [u.user_id for u in chosen] == sorted(u.user_id for u in chosen)


def tiny_setup():
    rng = np.random.default_rng(0)
    codes = np.array([[a, b, 0] for a in range(4) for b in range(3)], dtype=np.int64)  # 12 items
    users = [
        UserSequence(u, f"u{u}", tuple(int(i) for i in rng.integers(0, 12, 6))) for u in range(16)
    ]
    texts = ["salon manicure" if i % 2 else "" for i in range(12)]
    tokenizer = build_tokenizer(level_sizes_of(codes), texts, max_words=50, min_count=1)
    spec = PromptSpec("history", 4, 8)
    coder = build_encoder(tokenizer, sid_token_ids(tokenizer, codes), spec, texts, [""] * 16)
    train = [
        e for task in TASKS if task != "interests_history" for e in coder.task_examples(users, task)
    ]
    return tokenizer, spec, train, coder.validation_examples(users)


TINY_CONFIG = {
    "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
    "intermediate_size": 32, "max_position_embeddings": 64, "tie_word_embeddings": False,
}  # fmt: skip


def test_training_moves_every_parameter_and_the_model_round_trips(tmp_path, sft_params):
    torch.manual_seed(0)
    tokenizer, spec, train, valid = tiny_setup()
    model = build_token_model("llama", TINY_CONFIG, tokenizer)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = sft_params({
        "max_steps": 4, "per_device_train_batch_size": 8, "learning_rate": 1e-2,
        "eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 2, "save_steps": 2,
        "logging_steps": 1, "bf16": False, "disable_tqdm": True, "weight_decay": 0.0,
        "activation_checkpointing": False,
    })  # fmt: skip
    result = train_sft(
        model, tokenizer, train, valid, config, 0, None, tmp_path / "checkpoints", tmp_path / "live"
    )
    assert result.steps == 4 and np.isfinite(result.best_metric)
    unchanged = [n for n, p in result.model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    assert (tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv").exists()
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "loss.tsv").exists()

    result.model.generation_config.do_sample = True
    save_recommender(tmp_path / "model", result.model, tokenizer, spec)
    loaded = load_recommender(tmp_path / "model")
    assert loaded.spec == spec and not loaded.model.training
    assert not loaded.model.generation_config.do_sample
    assert loaded.tokenizer.get_vocab() == tokenizer.get_vocab()
    ids = torch.tensor([valid[0].input_ids])
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, result.model(ids).logits)


def test_time_budget_stops_training_early(tmp_path, sft_params):
    tokenizer, _, train, valid = tiny_setup()
    model = build_token_model("llama", TINY_CONFIG, tokenizer)
    config = sft_params({
        "max_steps": 1000, "per_device_train_batch_size": 8, "eval_strategy": "steps",
        "save_strategy": "steps", "eval_steps": 500, "save_steps": 500, "bf16": False,
        "disable_tqdm": True, "activation_checkpointing": False,
    }, max_minutes=0.0)  # fmt: skip
    result = train_sft(
        model, tokenizer, train, valid, config, 0, None, tmp_path / "checkpoints", tmp_path / "live"
    )
    assert result.stopped_by_time and result.steps == 1 and np.isfinite(result.best_metric)


def test_pretrained_backbone_gets_sid_tokens_and_lora_and_saves_merged(tmp_path, sft_params):
    # A stand-in checkpoint: a tiny model and a words-only tokenizer without SID tokens.
    words = build_tokenizer([], ["salon manicure glow"], max_words=10, min_count=1)
    build_token_model("llama", TINY_CONFIG, words).save_pretrained(tmp_path / "base")
    words.save_pretrained(tmp_path / "base")

    codes = np.array([[a, b, 0] for a in range(4) for b in range(3)], dtype=np.int64)
    tokenizer = extend_pretrained_tokenizer(tmp_path / "base", level_sizes_of(codes))
    lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}
    model = build_pretrained_lora_model(tmp_path / "base", tokenizer, lora)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == len(words) + 4 + 3 + 1
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("embed_tokens" in n for n in trainable)

    users = [UserSequence(u, f"u{u}", (u % 12, (u + 1) % 12, (u + 5) % 12, 3, 4)) for u in range(8)]
    spec = PromptSpec("history", 4, 8)
    coder = build_encoder(tokenizer, sid_token_ids(tokenizer, codes), spec, [""] * 12, [""] * 8)
    train, valid = coder.sequence_examples(users, "history"), coder.validation_examples(users)
    config = sft_params(
        {"max_steps": 2, "per_device_train_batch_size": 4, "eval_strategy": "steps",
         "save_strategy": "steps", "eval_steps": 2, "save_steps": 2, "bf16": False,
         "disable_tqdm": True, "activation_checkpointing": False},
        backbone="pretrained",
    )  # fmt: skip
    result = train_sft(
        model, tokenizer, train, valid, config, 0, None, tmp_path / "checkpoints", tmp_path / "live"
    )
    save_recommender(tmp_path / "model", result.model, tokenizer, spec)
    loaded = load_recommender(tmp_path / "model")
    assert not any("lora" in name for name, _ in loaded.model.named_parameters())
    assert loaded.tokenizer.tokenize("<a_3><b_2><c_0>") == ["<a_3>", "<b_2>", "<c_0>"]


def test_the_sft_config_carries_the_params_yaml_values_and_the_selection(tmp_path, sft_params):
    trainer = load("sft", ROOT / "params.yaml").trainer
    args = sft_config(sft_params(trainer, metric="ndcg@10"), 11, tmp_path)
    for key, value in trainer.items():
        assert getattr(args, key) == value, key
    assert (args.num_train_epochs, args.learning_rate, args.seed) == (8, 3e-3, 11)
    assert args.metric_for_best_model == "ndcg@10" and args.greater_is_better
    assert args.load_best_model_at_end and args.save_total_limit == 1
    by_loss = sft_config(sft_params(trainer, metric="loss"), 11, tmp_path)
    assert by_loss.metric_for_best_model == "loss" and not by_loss.greater_is_better
