"""Supervised fine-tuning with TRL's ``SFTTrainer`` on pre-tokenised examples.

The examples of :mod:`deepinterestgr.recommender.sft_data` already carry ``input_ids`` and
``labels``, so TRL neither re-tokenises nor re-masks them. Trainer settings come straight from
params into ``trl.SFTConfig``; only what the protocol needs is fixed here:

* labels are scored by the model's own head when it has one (the item-level model, tree-aware)
  or by a plain head on the labelled positions (:mod:`deepinterestgr.recommender.trainer_hooks`);
* after every evaluation the model ranks a sample of validation users with the constrained beam
  search (``validate``), and the checkpoint with the best ranking metric (e.g. ``ndcg@10``) is
  kept and drives early stopping: validation loss and HR@10 disagree once the loss has left its
  first plateau (METHOD.md, training cost). ``metric="loss"`` selects on validation loss;
* training stops when the time budget is spent; curves go to DVCLive.

Everything runs unchanged under ``accelerate launch``; only the main process writes files.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback
from trl import SFTConfig, SFTTrainer

from deepinterestgr.common.params import SftParams
from deepinterestgr.recommender.sft_data import SftExample
from deepinterestgr.recommender.sid_tokenizer import SidTokenizer
from deepinterestgr.recommender.trainer_hooks import train_quietly, training_run, use_own_log_probs

logger = logging.getLogger(__name__)

Validator = Callable[[torch.nn.Module], dict[str, float]]

# Trainer log keys worth a curve; runtimes, FLOPs and token counters are left out.
PLOTTED_PREFIXES = ("loss", "learning_rate", "grad_norm", "entropy", "mean_token_accuracy")


class SftResult(NamedTuple):
    model: torch.nn.Module  # the selected model (on the trainer's device)
    best_metric: float  # its selection metric
    best_step: int  # the step it was saved at
    evaluations: list[dict[str, float]]  # every evaluation: step, epoch, minutes, metrics
    steps: int
    epochs: float
    wall_time_s: float
    stopped_by_time: bool
    is_main_process: bool
    log_prob_head: str  # "model", "plain" or "trl" (see trainer_hooks.use_own_log_probs)


class RecommenderSftTrainer(SFTTrainer):
    """``SFTTrainer`` whose evaluation also ranks validation users (``validate``) and whose
    labels are scored without TRL's fused head where a cheaper exact one exists."""

    def __init__(self, *args: Any, validate: Validator | None, plain_head: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.validate = validate
        core = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        self.log_prob_head = use_own_log_probs(core, plain_head)
        self.started = time.monotonic()

    def train(self, *args: Any, **kwargs: Any):
        self.started = time.monotonic()
        return super().train(*args, **kwargs)

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        if self.validate is not None:
            ranked = self.validate(self.accelerator.unwrap_model(self.model))
            output.metrics.update({f"{prefix}_{key}": value for key, value in ranked.items()})
        # Wall-clock minutes since training began, validation included: the learning curve's x.
        output.metrics[f"{prefix}_minutes"] = (time.monotonic() - self.started) / 60
        return output


def launched_on_cpus_only() -> bool:
    """True under ``accelerate launch --multi_gpu`` / ``torchrun`` with several processes on a
    machine without CUDA. The trainer then has to be told ``use_cpu`` to join the gloo process
    group; without it every process trains alone on all the data."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def to_dataset(examples: Sequence[SftExample]) -> Dataset:
    return Dataset.from_dict(
        {"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]}
    )


def sft_config(config: SftParams, seed: int, output_dir: str | Path) -> SFTConfig:
    """``trl.SFTConfig`` of ``config.trainer`` as written in params, plus what is set here: the
    seed, checkpoint selection by ``config.selection.metric`` (one kept checkpoint, the best
    loaded at the end), DVCLive instead of TRL's reporting, and the device's settings."""
    selection = config.selection
    trainer_args = config.trainer
    if launched_on_cpus_only():
        trainer_args = {"use_cpu": True, **trainer_args}
    return SFTConfig(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        report_to="none",  # curves go to DVCLive through the shared callback
        load_best_model_at_end=True,
        metric_for_best_model=selection.metric,
        greater_is_better=selection.metric != "loss",
        save_only_model=True,
        save_total_limit=1,
        max_length=None,  # examples are built within the model's context already
        dataloader_pin_memory=torch.cuda.is_available(),  # pinned pages only help a GPU copy
        **trainer_args,
    )


def train_sft(
    model: torch.nn.Module,
    tokenizer: SidTokenizer,
    train: Sequence[SftExample],
    valid: Sequence[SftExample],
    config: SftParams,
    seed: int,
    validate: Validator | None,
    output_dir: str | Path,
    live_dir: str | Path,
) -> SftResult:
    """Train ``model`` on ``train`` and keep the checkpoint that ``config.selection`` prefers.

    ``valid`` gives the validation loss; ``validate(model)`` the ranking metrics a selection
    metric such as ``ndcg@10`` is read from (None when it is ``loss``). ``config.trainer`` passes
    straight into ``trl.SFTConfig`` (epochs, batch sizes, learning rate, schedule,
    ``eval_strategy`` with an equal ``save_strategy``...); training stops after
    ``config.selection.patience`` evaluations without improvement or when ``config.max_minutes``
    are spent. Checkpoints go to ``output_dir``. Labels are scored by a plain LM head on the
    labelled positions (small vocabularies) unless the backbone is ``pretrained``, which keeps
    TRL's tiled kernel.
    """
    selection = config.selection
    if selection.metric != "loss" and validate is None:
        raise ValueError(f"selection metric '{selection.metric}' needs a validate function")
    args = sft_config(config, seed, output_dir)
    run = training_run(config.max_minutes, live_dir, _plotted)
    trainer = RecommenderSftTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train),
        eval_dataset=to_dataset(valid),
        processing_class=tokenizer,
        callbacks=[EarlyStoppingCallback(selection.patience), *run.callbacks],
        validate=validate,
        plain_head=config.backbone != "pretrained",
    )
    logger.info("labels scored by the %s head", trainer.log_prob_head)
    output, elapsed = train_quietly(trainer)
    key = f"eval_{selection.metric}"
    evaluations = [
        {"step": row["step"], "epoch": row.get("epoch", math.nan)}
        | {k.removeprefix("eval_"): v for k, v in row.items() if _curve_key(k)}
        for row in trainer.state.log_history
        if key in row
    ]
    best = trainer.state.best_metric
    best_step = next((int(row["step"]) for row in evaluations if row[selection.metric] == best), 0)
    logger.info(
        "trained %d steps (%.2f epochs) in %.0f s; best validation %s %.4f at step %d",
        output.global_step,
        trainer.state.epoch or 0.0,
        elapsed,
        selection.metric,
        best if best is not None else math.nan,
        best_step,
    )
    return SftResult(
        model=trainer.model,
        best_metric=float(best) if best is not None else math.nan,
        best_step=best_step,
        evaluations=evaluations,
        steps=output.global_step,
        epochs=float(trainer.state.epoch or 0.0),
        wall_time_s=elapsed,
        stopped_by_time=run.budget.stopped,
        is_main_process=trainer.is_world_process_zero(),
        log_prob_head=trainer.log_prob_head,
    )


def _plotted(key: str) -> bool:
    name = key.removeprefix("eval_")
    return name.startswith(PLOTTED_PREFIXES) or "@" in name


def _curve_key(key: str) -> bool:
    return key.startswith("eval_") and (_plotted(key) or key == "eval_minutes")
