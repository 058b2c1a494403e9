"""Popularity counts training items only; SASRec trains, moves every weight and learns order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepinterestgr.baselines.popularity import PopularityRanker, training_counts
from deepinterestgr.baselines.sasrec import (
    SASRec,
    SASRecRanker,
    encode_histories,
    epoch_batches,
    learning_rate_factor,
    load_checkpoint,
    loss_on_batch,
    negative_weights,
    save_checkpoint,
    train_sasrec,
    training_batch,
)
from deepinterestgr.common.io import UserSequence
from deepinterestgr.common.params import SASRecParams
from deepinterestgr.evaluation.ranking import evaluate_ranker


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from threads; on a busy shared CPU two threads wait on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_config(**changes) -> SASRecParams:
    values = dict(
        hidden_size=16,
        num_blocks=1,
        num_heads=2,
        feedforward_size=32,
        activation="gelu",
        dropout=0.0,
        max_len=8,
        scale_embeddings=False,
        positions="from_oldest",
        loss="full_softmax",
        num_negatives=0,
        negative_exponent=0.5,
        batch_size=32,
        learning_rate=0.01,
        adam_beta2=0.999,
        weight_decay=0.0,
        warmup_steps=0,
        lr_schedule="constant",
        max_epochs=15,
        patience=3,
        early_stopping_k=10,
    )
    values.update(changes)
    return SASRecParams(**values)


def cycle_users(num_users: int, num_items: int, length: int, seed: int) -> list[UserSequence]:
    """Every user walks the catalogue in order (i, i+1, ... mod N) from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, num_items, size=num_users)
    return [
        UserSequence(u, f"u{u}", tuple(int(s + t) % num_items for t in range(length)))
        for u, s in enumerate(starts)
    ]


def test_popularity_counts_training_items_only():
    users = [
        UserSequence(0, "a", (0, 0, 1, 5, 6)),  # train (0, 0, 1); valid 5, test 6
        UserSequence(1, "b", (2, 1, 5, 6)),  # train (2, 1); valid 5, test 6
    ]
    counts = training_counts(users, 7)
    # Items 5 and 6 are bought by both users, but only as validation/test targets.
    np.testing.assert_array_equal(counts, [2, 2, 1, 0, 0, 0, 0])
    ranked = PopularityRanker(counts).rank([(0,), (1, 2)], 4)
    # Ties keep the lower id first: 0 and 1 (count 2), then 2, then 3 (count 0).
    np.testing.assert_array_equal(ranked, [[0, 1, 2, 3], [0, 1, 2, 3]])


def test_training_batch_shifts_inputs_and_pads_right():
    inputs, targets = training_batch([(3, 4, 5), (7, 8)])
    # Inputs are ids + 1 (0 = pad); targets are the next items, -100 at pads.
    np.testing.assert_array_equal(inputs, [[4, 5], [8, 0]])
    np.testing.assert_array_equal(targets, [[4, 5], [8, -100]])


def test_epoch_batches_cover_every_sequence_once():
    lengths = [3, 9, 4, 8, 3, 9, 2, 7]
    batches = epoch_batches(lengths, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert sorted(i for batch in batches for i in batch) == list(range(8))
    # One pool holds all 8 sequences, so each batch pairs neighbours in length order.
    assert sorted(sorted(lengths[i] for i in batch) for batch in batches) == [
        [2, 3],
        [3, 4],
        [7, 8],
        [9, 9],
    ]


def test_encode_histories_keeps_the_last_max_len_items():
    inputs, last = encode_histories([(1, 2, 3, 4), (6,), ()], max_len=3)
    np.testing.assert_array_equal(inputs, [[3, 4, 5], [7, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(last, [2, 0, 0])


def test_a_training_step_moves_every_parameter():
    torch.manual_seed(0)
    model = SASRec(num_items=10, config=small_config(num_blocks=2))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, targets = training_batch([(0, 1, 2, 3, 4, 5, 6, 7, 8), (9, 8, 7, 6, 5, 4, 3, 2, 1)])
    loss_on_batch(model, inputs, targets).backward()
    optimizer.step()
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert not unchanged, f"parameters not updated: {unchanged}"


def test_sasrec_scores_ignore_future_items():
    torch.manual_seed(0)
    model = SASRec(num_items=10, config=small_config()).eval()
    with torch.no_grad():
        short = model(torch.tensor([[1, 2, 0, 0]]))
        long = model(torch.tensor([[1, 2, 3, 4]]))
    # Causal attention: positions 0 and 1 cannot see what follows them.
    torch.testing.assert_close(short[:, :2], long[:, :2])


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "loss": "sampled_softmax",
            "num_negatives": 4,
            "scale_embeddings": True,
            "positions": "from_newest",
            "activation": "relu",
            "warmup_steps": 5,
            "lr_schedule": "cosine",
        },
    ],
)
def test_sasrec_learns_cycles_that_popularity_cannot(tmp_path, changes):
    users = cycle_users(num_users=200, num_items=20, length=8, seed=0)
    config = small_config(**changes)
    trained = train_sasrec(users, 20, config, True, eval_batch_size=64, seed=0)
    assert 1 <= trained.best_epoch <= trained.epochs_run <= 15
    assert trained.epochs_run - trained.best_epoch <= 3

    sasrec = evaluate_ranker(SASRecRanker(trained.model), users, "test", (1, 10), True, 64, False)
    popularity = PopularityRanker(training_counts(users, 20))
    baseline = evaluate_ranker(popularity, users, "test", (1, 10), True, 64, False)
    # The next item is always the last one + 1: a sequence model gets it, popularity cannot.
    assert sasrec.metrics["hr@1"] > 0.9
    assert baseline.metrics["hr@1"] < 0.3
    assert sasrec.metrics["ndcg@10"] > baseline.metrics["ndcg@10"] + 0.3

    save_checkpoint(tmp_path / "sasrec.pt", trained.model, config)
    reloaded = SASRecRanker(load_checkpoint(tmp_path / "sasrec.pt"))
    histories = [u.test_history for u in users[:5]]
    np.testing.assert_array_equal(
        reloaded.rank(histories, 5), SASRecRanker(trained.model).rank(histories, 5)
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"loss": "sampled_softmax", "num_negatives": 4},
        {"scale_embeddings": True, "positions": "from_newest", "activation": "relu"},
    ],
)
def test_sasrec_training_is_deterministic(changes):
    users = cycle_users(num_users=60, num_items=12, length=6, seed=1)
    config = small_config(max_epochs=2, dropout=0.1, **changes)
    first = train_sasrec(users, 12, config, True, eval_batch_size=64, seed=3)
    second = train_sasrec(users, 12, config, True, eval_batch_size=64, seed=3)
    assert [e.train_loss for e in first.history] == [e.train_loss for e in second.history]


def test_scaled_embeddings_enter_the_blocks_times_sqrt_hidden():
    torch.manual_seed(0)
    model = SASRec(num_items=10, config=small_config(hidden_size=16, scale_embeddings=True))
    with torch.no_grad():
        model.position_embedding.weight.zero_()
    seen = []
    model.dropout.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    inputs = torch.tensor([[3, 7, 0]])
    model(inputs)
    # sqrt(16) = 4; the pad row stays 0.
    torch.testing.assert_close(seen[0], 4.0 * model.item_embedding(inputs))
    # Output scores use the unscaled embeddings.
    hidden = torch.ones(1, 16)
    torch.testing.assert_close(
        model.item_logits(hidden), hidden @ model.item_embedding.weight[1:].T
    )


def test_positions_count_from_the_oldest_or_back_from_each_rows_newest_item():
    inputs = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0], [2, 0, 0, 0]])
    oldest = SASRec(10, small_config(positions="from_oldest")).positions(inputs)
    newest = SASRec(10, small_config(positions="from_newest")).positions(inputs)
    np.testing.assert_array_equal(oldest, [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]])
    # Like left padding to a fixed window: every row's last item is at position 0.
    np.testing.assert_array_equal(newest, [[3, 2, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_from_newest_ranks_a_history_the_same_at_any_padding():
    torch.manual_seed(0)
    model = SASRec(10, small_config(positions="from_newest")).eval()
    with torch.no_grad():
        alone = model(torch.tensor([[3, 5]]))[0, 1]
        padded = model(torch.tensor([[3, 5, 0, 0], [1, 2, 3, 4]]))[0, 1]
    torch.testing.assert_close(alone, padded)


def test_relu_activation_reaches_every_block():
    model = SASRec(10, small_config(num_blocks=2, activation="relu"))
    assert all(layer.activation is torch.nn.functional.relu for layer in model.blocks.layers)


def test_sampled_softmax_runs_over_the_distinct_batch_targets_and_negatives():
    torch.manual_seed(0)
    model = SASRec(num_items=10, config=small_config())
    inputs, targets = training_batch([(0, 1, 3), (2, 1)])  # targets 1, 3 and 1
    negatives = torch.tensor([6, 6, 3, 0])  # repeats, and a sampled copy of a target
    sampled = loss_on_batch(model, inputs, targets, negatives)  # dropout 0: deterministic
    # By hand: the softmax of each real position over the items {0, 1, 3, 6}, once each.
    hidden = model(inputs)[targets != -100]
    logits = model.item_logits(hidden)[:, [0, 1, 3, 6]]
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2, 1]))
    torch.testing.assert_close(sampled, expected)
    # Sampling every item gives the full softmax.
    full = loss_on_batch(model, inputs, targets)
    torch.testing.assert_close(loss_on_batch(model, inputs, targets, torch.arange(10)), full)


def test_negative_weights_are_training_counts_to_the_exponent():
    counts = np.array([4, 0, 9, 1])
    np.testing.assert_allclose(negative_weights(counts, 0.5), [2.0, 0.0, 3.0, 1.0])
    np.testing.assert_allclose(negative_weights(counts, 0.0), [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="no item"):
        negative_weights(np.zeros(3, dtype=np.int64), 1.0)


def test_learning_rate_warms_up_linearly_then_follows_the_schedule():
    cosine = [learning_rate_factor(step, 4, 12, "cosine") for step in (0, 3, 4, 8, 12, 20)]
    # warm-up 1/4 .. 4/4; then cos from 1 at step 4 via 0.5 halfway (step 8) to 0 at step 12.
    np.testing.assert_allclose(cosine, [0.25, 1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-12)
    constant = [learning_rate_factor(step, 2, 12, "constant") for step in (0, 1, 2, 50)]
    assert constant == [0.5, 1.0, 1.0, 1.0]


def test_cosine_schedule_reaches_zero_at_max_epochs():
    users = cycle_users(num_users=60, num_items=12, length=6, seed=1)
    config = small_config(max_epochs=3, patience=3, warmup_steps=2, lr_schedule="cosine")
    trained = train_sasrec(users, 12, config, True, eval_batch_size=64, seed=0)
    assert trained.epochs_run == 3
    rates = [epoch.learning_rate for epoch in trained.history]
    assert rates[0] > rates[1] > rates[2] == 0.0
    assert all(epoch.cpu_seconds > 0 for epoch in trained.history)


def test_heads_must_divide_the_hidden_size():
    with pytest.raises(ValueError, match="not divisible"):
        SASRec(10, small_config(hidden_size=10, num_heads=3))


def test_ranking_a_batch_of_mixed_lengths_equals_ranking_each_history_alone():
    torch.manual_seed(0)
    ranker = SASRecRanker(SASRec(12, small_config(max_len=4)))
    histories = [(1, 2, 3, 4, 5, 6), (7,), (), (3, 9), (2, 8, 1), (5, 5)]
    together = ranker.rank(histories, 5)
    alone = np.concatenate([ranker.rank([history], 5) for history in histories])
    np.testing.assert_array_equal(together, alone)
