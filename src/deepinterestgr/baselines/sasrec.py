"""SASRec (Kang & McAuley, ICDM 2018) trained with softmax cross-entropy.

The model reads a user's most recent ``max_len`` items and, at every position t, predicts the
item at t+1 from items 0..t (causal self-attention). Item embeddings are shared between input
and output: the score of item i is the dot product of the last hidden state with i's
embedding. The original paper trains with one sampled negative and binary cross-entropy;
a softmax over many items is the stronger variant and what we use here (Amazon Beauty,
leave-one-out, HR@10: .0605 with BCE in the TIGER paper, .0851 with cross-entropy in a public
model zoo): over all items (``full_softmax``) or, much cheaper per step, over the batch's
targets plus ``num_negatives`` items sampled by popularity (``sampled_softmax``, as cornac).

Layout (shapes for a batch of B sequences of length T, hidden size H, N items):

* ids are shifted by one inside the model so that 0 is padding; sequences are right-padded,
  so causal attention never sees padding from a real position (left padding would need a
  key-padding mask, and all-masked pad rows give NaN). ``positions: from_newest`` numbers
  the positions back from each row's last item, which is what left padding to a fixed window
  gives the original SASRec;
* input ``[B, T]`` -> item embeddings (times sqrt(H) with ``scale_embeddings``) + learned
  position embeddings -> dropout -> ``num_blocks`` pre-norm Transformer blocks with a causal
  mask -> LayerNorm -> hidden ``[B, T, H]``;
* logits ``[.., N]`` = hidden ``@ item_embeddings[1:].T``.

Training: each user's *training* items ``items[:-2]`` (last ``max_len + 1``) give inputs
``seq[:-1]`` and targets ``seq[1:]``; loss = mean cross-entropy over all non-pad positions
(batches group similar lengths, :func:`epoch_batches`, to cut padding). Adam with linear
warm-up, then a constant or cosine learning rate. After each epoch the model ranks the
validation split (:mod:`deepinterestgr.evaluation.ranking`) and the epoch with the best NDCG@K is
kept; training stops after ``patience`` epochs without a better one.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from deepinterestgr.baselines.popularity import training_counts
from deepinterestgr.common.config import build, to_dict
from deepinterestgr.common.io import UserSequence, write_state_dict
from deepinterestgr.common.params import SASRecParams
from deepinterestgr.evaluation.ranking import evaluate_ranker

logger = logging.getLogger(__name__)

IGNORE = -100  # target at a pad position; skipped by the loss


class SASRec(nn.Module):
    """Causal self-attention over item sequences (see the module docstring)."""

    def __init__(self, num_items: int, config: SASRecParams) -> None:
        super().__init__()
        if config.hidden_size % config.num_heads:
            raise ValueError(
                f"hidden_size {config.hidden_size} is not divisible by num_heads {config.num_heads}"
            )
        self.num_items = num_items
        self.max_len = config.max_len
        # Kang & McAuley scale the input item embeddings by sqrt(H): with small initial
        # embeddings, item identity then outweighs position in the input. Output scores use
        # the unscaled embeddings.
        self.input_scale = config.hidden_size**0.5 if config.scale_embeddings else 1.0
        self.positions_from_newest = config.positions == "from_newest"
        self.item_embedding = nn.Embedding(num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        block = nn.TransformerEncoderLayer(
            d_model=config.hidden_size,
            nhead=config.num_heads,
            dim_feedforward=config.feedforward_size,
            dropout=config.dropout,
            activation=config.activation,
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(
            block,
            config.num_blocks,
            norm=nn.LayerNorm(config.hidden_size),
            enable_nested_tensor=False,
        )
        # Small embeddings (as in BERT/RecBole): with N(0, 1) the tied output logits start huge.
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def positions(self, inputs: torch.Tensor) -> torch.Tensor:
        """Position ids int64 ``[B, T]`` of right-padded shifted ids ``[B, T]``.

        ``from_oldest``: 0, 1, ... from each row's first item. ``from_newest``: each row's last
        item is 0 and earlier items count up, which is what left padding to a fixed window
        gives (Kang & McAuley; cornac): the item a ranking is read from always sits at the same
        position. Pads get 0; causal attention never reads them from a real position.
        """
        length = inputs.shape[1]
        ascending = torch.arange(length, device=inputs.device).expand(len(inputs), length)
        if not self.positions_from_newest:
            return ascending
        last = (inputs != 0).sum(dim=1, keepdim=True) - 1
        return (last - ascending).clamp(min=0)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs``: int64 ``[B, T]`` shifted ids (0 = pad), T <= max_len -> ``[B, T, H]``."""
        items = self.item_embedding(inputs) * self.input_scale
        hidden = self.dropout(items + self.position_embedding(self.positions(inputs)))
        length = inputs.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=inputs.device)
        return self.blocks(hidden, mask=causal, is_causal=True)

    def item_logits(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., H]`` -> ``[..., N]``: a score for every catalogue item (pad row excluded),
        or ``[..., C]`` for the unshifted item ids ``items`` ``[C]`` only."""
        if items is None:
            return hidden @ self.item_embedding.weight[1:].T
        return hidden @ self.item_embedding(items + 1).T


def encode_histories(
    histories: Sequence[Sequence[int]], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded model input of the last ``max_len`` items of each history.

    Returns shifted ids int64 ``[B, T]`` (0 = pad, T = longest kept history, at least 1) and
    the index of each row's last item ``[B]`` (0 for an empty history, read at a pad).
    """
    kept = [list(history)[-max_len:] for history in histories]
    length = max([1, *(len(items) for items in kept)])
    inputs = torch.zeros((len(kept), length), dtype=torch.long)
    for row, items in enumerate(kept):
        inputs[row, : len(items)] = torch.tensor(items, dtype=torch.long) + 1
    last = torch.tensor([max(len(items) - 1, 0) for items in kept], dtype=torch.long)
    return inputs, last


def training_batch(sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-item inputs and targets from training sequences of at least 2 items.

    Returns shifted inputs int64 ``[B, T]`` (0 = pad) and unshifted targets ``[B, T]``
    (:data:`IGNORE` at pads), T = longest sequence - 1.
    """
    length = max(len(seq) for seq in sequences) - 1
    inputs = torch.zeros((len(sequences), length), dtype=torch.long)
    targets = torch.full((len(sequences), length), IGNORE, dtype=torch.long)
    for row, seq in enumerate(sequences):
        items = torch.tensor(seq, dtype=torch.long)
        inputs[row, : len(seq) - 1] = items[:-1] + 1
        targets[row, : len(seq) - 1] = items[1:]
    return inputs, targets


def training_sequences(users: Sequence[UserSequence], max_len: int) -> list[tuple[int, ...]]:
    """The last ``max_len + 1`` training items of every user with at least 2 of them."""
    return [user.train[-(max_len + 1) :] for user in users if len(user.train) >= 2]


def epoch_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffled batches of sequence indices that group similar lengths ("sortish" batching).

    The indices are shuffled, cut into pools of 50 batches, each pool sorted by length and cut
    into batches, and the batch order shuffled again. Batches stay random while their padding
    (and the cost of attending over it) shrinks several-fold on long-tailed lengths.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = 50 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def loss_on_batch(
    model: SASRec,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean softmax cross-entropy at every non-pad position.

    ``negatives`` None: the softmax runs over all N items. Otherwise (int64 ``[S]`` item ids,
    repeats allowed) over the distinct items among the batch's targets and ``negatives``,
    shared by every position: a sampled softmax with in-batch negatives and no logQ
    correction (as cornac trains SASRec), about N / (targets + S) times cheaper in the head.
    """
    hidden = model(inputs)
    real = targets != IGNORE
    # Scoring only real positions skips the logits of the padding.
    hidden, targets = hidden[real], targets[real]
    if negatives is None:
        return nn.functional.cross_entropy(model.item_logits(hidden), targets)
    # Each item is one column, so a sampled copy of a target is not a second, negative column.
    candidates, column = torch.unique(torch.cat([targets, negatives]), return_inverse=True)
    logits = model.item_logits(hidden, candidates)
    return nn.functional.cross_entropy(logits, column[: len(targets)])


def negative_weights(counts: np.ndarray, exponent: float) -> torch.Tensor:
    """Sampling weights float64 ``[N]`` = training count ** exponent (exponent 0: uniform).

    ``counts``: int ``[N]`` training occurrences per item. An item never bought in training
    has weight 0 unless the exponent is 0 (it cannot be a target, so it is never sampled).
    """
    weights = torch.as_tensor(counts, dtype=torch.float64) ** exponent  # 0 ** 0 = 1
    if not weights.sum() > 0:
        raise ValueError("no item has a positive sampling weight: no training items")
    return weights


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimisation step ``step`` (0-based).

    Linear warm-up: (step + 1) / warmup_steps for the first ``warmup_steps`` steps; then 1
    (``constant``) or 0.5 * (1 + cos(pi * p)) with p = (step - warmup) / (total - warmup)
    capped at 1 (``cosine``: 1 right after warm-up, 0 at ``total_steps``).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class SASRecRanker:
    """Ranks the whole catalogue by SASRec's score after the last history item."""

    def __init__(self, model: SASRec) -> None:
        self.model = model

    @torch.no_grad()
    def rank(self, histories: Sequence[Sequence[int]], num: int) -> np.ndarray:
        """Top ``num`` item ids per history, best first: int64 ``[B, min(num, N)]``.

        Histories are encoded in groups of equal kept length: padded to the batch's longest,
        most rows would be padding (Beauty: 50 positions for a median of 7 items).
        """
        was_training = self.model.training
        self.model.eval()
        lengths = np.array([min(len(history), self.model.max_len) for history in histories])
        top = np.empty((len(histories), min(num, self.model.num_items)), dtype=np.int64)
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            inputs, last = encode_histories([histories[row] for row in rows], self.model.max_len)
            hidden = self.model(inputs)[torch.arange(len(inputs)), last]
            scores = self.model.item_logits(hidden)
            top[rows] = scores.topk(top.shape[1], dim=1).indices.numpy()
        self.model.train(was_training)
        return top


def save_checkpoint(path: str | Path, model: SASRec, config: SASRecParams) -> None:
    """Write the weights with what is needed to rebuild the model (atomically)."""
    checkpoint = {
        "num_items": model.num_items,
        "config": to_dict(config),
        "state_dict": model.state_dict(),
    }
    write_state_dict(path, checkpoint)  # equal weights, equal bytes


def load_checkpoint(path: str | Path) -> SASRec:
    """Rebuild a model written by :func:`save_checkpoint`, in eval mode."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = SASRec(checkpoint["num_items"], build(SASRecParams, checkpoint["config"], str(path)))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


class EpochLog(NamedTuple):
    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy over the epoch's batches (sampled or full softmax)
    valid_ndcg: float  # validation NDCG@K after the epoch
    seconds: float  # wall time of the epoch including validation
    cpu_seconds: float  # CPU time of this process since training began, at the epoch's end
    learning_rate: float  # scheduled learning rate after the epoch


class TrainingResult(NamedTuple):
    model: SASRec  # with the weights of the best epoch
    best_epoch: int  # 1-based epoch with the best validation NDCG@K
    best_valid_ndcg: float
    epochs_run: int
    wall_time_s: float  # training plus per-epoch validation
    cpu_time_s: float  # CPU seconds of this process over the same span (all its threads)
    history: list[EpochLog]


def train_sasrec(
    users: Sequence[UserSequence],
    num_items: int,
    config: SASRecParams,
    exclude_history: bool,
    eval_batch_size: int,
    seed: int,
) -> TrainingResult:
    """Train SASRec on the users' training items, early-stopped on validation NDCG@K.

    ``exclude_history`` is the evaluation protocol's flag, used for the validation ranking so
    the model is selected under the protocol it is reported with. ``seed`` fixes the model's
    initialisation, dropout and batch order.
    """
    torch.manual_seed(seed)
    model = SASRec(num_items, config)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.learning_rate,
        betas=(0.9, config.adam_beta2),
        weight_decay=config.weight_decay,
    )
    sequences = training_sequences(users, config.max_len)
    if not sequences:
        raise ValueError("no user has 2 or more training items: nothing to train SASRec on")
    lengths = [len(seq) for seq in sequences]
    order_rng = torch.Generator().manual_seed(seed)
    negative_rng = torch.Generator().manual_seed(seed + 1)
    weights = None
    if config.loss == "sampled_softmax":
        weights = negative_weights(training_counts(users, num_items), config.negative_exponent)
    steps_per_epoch = len(epoch_batches(lengths, config.batch_size, torch.Generator()))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: learning_rate_factor(
            step, config.warmup_steps, config.max_epochs * steps_per_epoch, config.lr_schedule
        ),
    )
    ranker = SASRecRanker(model)
    logger.info(
        "SASRec: %s parameters, %s training sequences, %s items",
        f"{sum(p.numel() for p in model.parameters()):,}",
        f"{len(sequences):,}",
        f"{num_items:,}",
    )
    history: list[EpochLog] = []
    best_state, best_epoch, best_ndcg = copy.deepcopy(model.state_dict()), 0, -1.0
    started, cpu_started = time.perf_counter(), time.process_time()
    for epoch in range(1, config.max_epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        losses = []
        batches = epoch_batches(lengths, config.batch_size, order_rng)
        for batch in tqdm(batches, desc=f"sasrec epoch {epoch}", unit="batch", leave=False):
            inputs, targets = training_batch([sequences[i] for i in batch])
            negatives = None
            if weights is not None:
                negatives = torch.multinomial(
                    weights, config.num_negatives, replacement=True, generator=negative_rng
                )
            loss = loss_on_batch(model, inputs, targets, negatives)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        valid = evaluate_ranker(
            ranker,
            users,
            "valid",
            (config.early_stopping_k,),
            exclude_history,
            eval_batch_size,
            progress=False,
        )
        ndcg = valid.metrics[f"ndcg@{config.early_stopping_k}"]
        history.append(
            EpochLog(
                epoch,
                float(np.mean(losses)),
                ndcg,
                time.perf_counter() - epoch_start,
                time.process_time() - cpu_started,
                optimizer.param_groups[0]["lr"],
            )
        )
        logger.info(
            "epoch %d: loss %.4f, valid ndcg@%d %.4f, lr %.2e (%.1f s; %.0f s CPU so far)",
            epoch,
            history[-1].train_loss,
            config.early_stopping_k,
            ndcg,
            history[-1].learning_rate,
            history[-1].seconds,
            history[-1].cpu_seconds,
        )
        if ndcg > best_ndcg:
            best_state, best_epoch, best_ndcg = copy.deepcopy(model.state_dict()), epoch, ndcg
        elif epoch - best_epoch >= config.patience:
            logger.info("no better validation NDCG for %d epochs: stopping", config.patience)
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainingResult(
        model=model,
        best_epoch=best_epoch,
        best_valid_ndcg=best_ndcg,
        epochs_run=len(history),
        wall_time_s=time.perf_counter() - started,
        cpu_time_s=time.process_time() - cpu_started,
        history=history,
    )
