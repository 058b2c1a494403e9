"""Supervised fine-tuning with TRL's ``SFTTrainer`` on pre-tokenised examples.

The examples of :mod:`deepinterestgr.sft_data` already carry ``input_ids`` and ``labels``, so
TRL neither re-tokenises nor re-masks them. Trainer settings come straight from params into
``trl.SFTConfig``; only what the protocol needs is fixed here: keep the checkpoint with the
lowest validation loss, stop early when it stops improving or when the time budget is spent,
and log the curves with DVCLive (``dvcyaml=False``: DVCLive must not rewrite ``dvc.yaml``).
Everything runs unchanged under ``accelerate launch``; only the main process writes files.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from deepinterestgr.sft_data import SftExample
from deepinterestgr.sid_tokenizer import SidTokenizer

logger = logging.getLogger(__name__)


class SftResult(NamedTuple):
    model: torch.nn.Module  # the best model by validation loss (on the trainer's device)
    best_eval_loss: float
    steps: int
    epochs: float
    wall_time_s: float
    stopped_by_time: bool
    is_main_process: bool


class TimeBudgetCallback(TrainerCallback):
    """Stops training after ``max_minutes``, evaluating and saving once more first so the best
    checkpoint is chosen among everything trained."""

    def __init__(self, max_minutes: float) -> None:
        self.max_seconds = max_minutes * 60.0
        self.start = time.monotonic()
        self.stopped = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if not self.stopped and time.monotonic() - self.start > self.max_seconds:
            logger.info(
                "time budget of %.1f min spent at step %d", self.max_seconds / 60, state.global_step
            )
            self.stopped = True
            control.should_training_stop = True
            # With per-epoch evaluation the trainer still closes the epoch (evaluate, save).
            if args.eval_strategy != "epoch":
                control.should_evaluate = True
                control.should_save = True
        return control


class DvcLiveCallback(TrainerCallback):
    """Logs every trainer log line to DVCLive at the trainer's global step (main process only)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = str(folder)
        self.live = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.live is None:
            from dvclive import Live

            self.live = Live(self.folder, dvcyaml=False, save_dvc_exp=False, report=None)
        self.live.step = state.global_step
        for key, value in logs.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                # "eval_loss" -> "eval/loss", "loss" -> "train/loss": one plot per quantity.
                name = (
                    key.replace("eval_", "eval/", 1) if key.startswith("eval_") else f"train/{key}"
                )
                self.live.log_metric(name, value)

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is not None:
            self.live.end()


def launched_on_cpus_only() -> bool:
    """True under ``accelerate launch --multi_gpu`` / ``torchrun`` with several processes on a
    machine without CUDA. The trainer then has to be told ``use_cpu`` to join the gloo process
    group; without it every process trains alone on all the data."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def to_dataset(examples: Sequence[SftExample]) -> Dataset:
    return Dataset.from_dict(
        {"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]}
    )


def train_sft(
    model: torch.nn.Module,
    tokenizer: SidTokenizer,
    train: Sequence[SftExample],
    valid: Sequence[SftExample],
    trainer_args: dict[str, Any],
    output_dir: str | Path,
    live_dir: str | Path,
    seed: int,
    early_stopping_patience: int,
    max_minutes: float,
) -> SftResult:
    """Train ``model`` on ``train``, select the checkpoint with the lowest loss on ``valid``.

    ``trainer_args`` are ``trl.SFTConfig`` keys (epochs, batch sizes, learning rate, schedule,
    ``eval_strategy`` with an equal ``save_strategy``...). Checkpoints go to ``output_dir``.
    """
    if launched_on_cpus_only():
        trainer_args = {"use_cpu": True, **trainer_args}
    config = SFTConfig(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        report_to="none",
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_only_model=True,
        save_total_limit=1,
        max_length=None,  # examples are built within the model's context already
        **trainer_args,
    )
    budget = TimeBudgetCallback(max_minutes)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=to_dataset(train),
        eval_dataset=to_dataset(valid),
        processing_class=tokenizer,
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience),
            budget,
            DvcLiveCallback(live_dir),
        ],
    )
    start = time.monotonic()
    output = trainer.train()
    elapsed = time.monotonic() - start
    best = trainer.state.best_metric
    logger.info(
        "trained %d steps (%.2f epochs) in %.0f s; best validation loss %.4f",
        output.global_step,
        trainer.state.epoch or 0.0,
        elapsed,
        best if best is not None else math.nan,
    )
    return SftResult(
        model=trainer.model,
        best_eval_loss=float(best) if best is not None else math.nan,
        steps=output.global_step,
        epochs=float(trainer.state.epoch or 0.0),
        wall_time_s=elapsed,
        stopped_by_time=budget.stopped,
        is_main_process=trainer.is_world_process_zero(),
    )
