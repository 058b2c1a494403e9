"""What the ``sft`` and ``grpo`` trainers share: the per-token log-probability head, a time
budget, DVCLive curves, deterministic mode without its scratch-memory fill, and the one way a
training run is started (:func:`training_run`, :func:`train_quietly`).

TRL's trainers patch ``model.forward`` with a fused LM head that tiles over the vocabulary and
recomputes logits in backward. On a CPU it scores every position (prompts and padding too) and
makes about twenty elementwise passes; with a small SID vocabulary a plain head on the labelled
positions only is ~5x cheaper (METHOD.md, training cost). :func:`use_own_log_probs` undoes the
patch for a model whose own ``forward`` takes ``fused_lm_head``
(:class:`~deepinterestgr.recommender.item_sid_model.ItemSidModel`, tree-normalised) or installs
:func:`add_plain_lm_head` on a small scratch causal LM; pretrained checkpoints with large
vocabularies keep TRL's tiled kernel, which bounds memory.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import re
import time
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import TrainerCallback

from deepinterestgr.recommender.item_sid_model import IGNORE, SidLogProbOutput

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- log-probabilities


def computes_own_log_probs(model: torch.nn.Module) -> bool:
    """Whether the model class's ``forward`` takes ``fused_lm_head`` itself."""
    return "fused_lm_head" in inspect.signature(type(model).forward).parameters


def use_own_log_probs(model: torch.nn.Module, plain_head: bool) -> str:
    """Replace TRL's fused-head patch on ``model`` (the unwrapped model) after a TRL trainer
    was built. Returns which head scores labels now: ``"model"``, ``"plain"`` or ``"trl"``."""
    if computes_own_log_probs(model):
        model.__dict__.pop("forward", None)  # back to the class's own forward
        return "model"
    if plain_head:
        add_plain_lm_head(model)
        return "plain"
    return "trl"


def add_plain_lm_head(model: torch.nn.Module) -> None:
    """Patch a causal LM so ``model(..., labels, fused_lm_head=True)`` returns the per-token
    fields TRL reads (:class:`~deepinterestgr.recommender.item_sid_model.SidLogProbOutput`),
    computed with one ``[M, H] x [H, V]`` product over the M labelled positions only."""
    original = type(model).forward

    def forward(self, *args, fused_lm_head=False, labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            if labels is not None:
                kwargs["labels"] = labels
            return original(self, *args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        target = labels[:, 1:]
        mask = target != IGNORE
        logits = self.get_output_embeddings()(hidden[mask]).float()
        log_all = logits.log_softmax(-1)
        picked = log_all.gather(1, target[mask][:, None]).squeeze(1)
        log_probs = hidden.new_zeros(mask.shape, dtype=picked.dtype).masked_scatter(mask, picked)
        with torch.no_grad():
            entropy = torch.zeros_like(log_probs)
            entropy[mask] = -(log_all.exp() * log_all).sum(-1)
            is_top1 = torch.zeros_like(mask)
            is_top1[mask] = logits.argmax(-1) == target[mask]
        count = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = -log_probs.sum() / torch.as_tensor(count, device=hidden.device).clamp(min=1)
        return SidLogProbOutput(
            loss=loss, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=mask
        )

    model.forward = types.MethodType(forward, model)


# --------------------------------------------------------------------------- determinism


@contextlib.contextmanager
def without_memory_fill() -> Iterator[None]:
    """Deterministic mode (``seed_everything``) fills every ``torch.empty`` with NaN so a read
    of uninitialised memory shows; training only allocates buffers it writes before reading, and
    the fill cost 16 % of an SFT step on a CPU. Results are unchanged."""
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill


# Warnings raised inside libraries about their own calls, which no params or code of ours
# changes: (message start, module that raises it, why it is safe to hide).
LIBRARY_WARNINGS = (
    (
        "`is_gradient_checkpointing` is deprecated",
        "transformers.modeling_utils",
        "TRL's GRPO and peft read transformers' old property name; the value is the same",
    ),
    (
        "Setting `save_embedding_layers` to `True`",
        "peft.utils.save_and_load",
        "peft saves the resized embeddings, as it must: the new SID rows are trained in full",
    ),
)


@contextlib.contextmanager
def library_warnings_hidden() -> Iterator[None]:
    """Hide :data:`LIBRARY_WARNINGS` (and only those) inside the block."""
    with warnings.catch_warnings():
        for message, module, _reason in LIBRARY_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message), module=module)
        yield


# --------------------------------------------------------------------------- callbacks


class TimeBudget(TrainerCallback):
    """Stops training after the step that crosses ``max_minutes`` of wall-clock time. With
    evaluation by epoch the trainer still closes the epoch (evaluate, save); otherwise it is
    asked to evaluate and save once more, so the best checkpoint is chosen among everything
    trained. ``clock`` returns seconds (``time.monotonic``; a test passes a counter)."""

    def __init__(self, max_minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_seconds = max_minutes * 60.0
        self.clock = clock
        self.start = clock()
        self.stopped = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if not self.stopped and self.clock() - self.start > self.max_seconds:
            logger.info(
                "time budget of %.1f min spent at step %d", self.max_seconds / 60, state.global_step
            )
            self.stopped = True
            control.should_training_stop = True
            if args.eval_strategy not in ("epoch", "no"):
                control.should_evaluate = True
                control.should_save = args.save_strategy != "no"
        return control


def plot_name(key: str) -> str:
    """A trainer log key as a DVCLive metric: ``eval_loss`` -> ``eval/loss``, ``loss`` ->
    ``train/loss``, ``rewards/exact/mean`` -> ``train/rewards/exact/mean``."""
    return key.replace("eval_", "eval/", 1) if key.startswith("eval_") else f"train/{key}"


class DvcLiveCallback(TrainerCallback):
    """Logs the trainer's numeric log values that ``keep(key)`` accepts to DVCLive at the global
    step (main process only; ``dvcyaml=False``: DVCLive must never rewrite ``dvc.yaml``)."""

    def __init__(self, folder: str | Path, keep: Callable[[str], bool] = lambda key: True) -> None:
        self.folder = str(folder)
        self.keep = keep
        self.live: Any = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.live is None:
            from dvclive import Live

            self.live = Live(self.folder, dvcyaml=False, save_dvc_exp=False, report=None)
        self.live.step = state.global_step
        for key, value in logs.items():
            if self.keep(key) and isinstance(value, (int, float)) and math.isfinite(value):
                self.live.log_metric(plot_name(key), value)

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is not None:
            self.live.end()


# --------------------------------------------------------------------------- one training run


class TrainingRun(NamedTuple):
    """What every trainer of the recommender is given besides its own callbacks."""

    budget: TimeBudget  # read ``budget.stopped`` after training
    callbacks: list[TrainerCallback]  # the budget, then DVCLive curves when a folder is given


def training_run(
    max_minutes: float, live_dir: str | Path | None, plotted: Callable[[str], bool]
) -> TrainingRun:
    """The callbacks ``sft`` and ``grpo`` share: a :class:`TimeBudget` of ``max_minutes`` and,
    when ``live_dir`` is set, a :class:`DvcLiveCallback` of the log keys ``plotted`` accepts."""
    budget = TimeBudget(max_minutes)
    callbacks: list[TrainerCallback] = [budget]
    if live_dir is not None:
        callbacks.append(DvcLiveCallback(live_dir, keep=plotted))
    return TrainingRun(budget, callbacks)


def train_quietly(trainer: Any) -> tuple[Any, float]:
    """``trainer.train()`` without the deterministic-mode memory fill and with the known library
    warnings hidden. Returns its output and the wall-clock seconds it took."""
    started = time.monotonic()
    with without_memory_fill(), library_warnings_hidden():
        output = trainer.train()
    return output, time.monotonic() - started
