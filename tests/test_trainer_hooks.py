"""The callbacks every trainer of the recommender shares, driven by hand-made events: the time
budget stops at the step its clock crosses, DVCLive gets one row per logged step."""

from __future__ import annotations

import math
from types import SimpleNamespace

from transformers import TrainerControl, TrainerState

from deepinterestgr.recommender.trainer_hooks import (
    DvcLiveCallback,
    TimeBudget,
    plot_name,
    training_run,
)


class MinuteClock:
    """A clock that moves one minute forward at every reading."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return 60.0 * self.readings


def run_steps(budget: TimeBudget, args: SimpleNamespace, steps: int) -> list[int]:
    """Drive ``budget`` through ``steps`` step ends; return the steps that asked to stop."""
    state, stops = TrainerState(), []
    budget.on_train_begin(args, state, TrainerControl())
    for step in range(1, steps + 1):
        state.global_step = step
        control = budget.on_step_end(args, state, TrainerControl())
        if control.should_training_stop:
            stops.append(step)
    return stops


def test_the_time_budget_stops_once_at_the_step_that_crosses_it():
    # Begin reads minute 1; step s ends at minute s + 1, so s minutes have passed. A budget of
    # 2.5 minutes is crossed at step 3 (3 > 2.5), and only there.
    budget = TimeBudget(2.5, clock=MinuteClock())
    args = SimpleNamespace(eval_strategy="epoch", save_strategy="epoch")
    assert run_steps(budget, args, steps=6) == [3]
    assert budget.stopped


def test_the_time_budget_asks_for_a_last_evaluation_unless_epochs_close_one():
    state = TrainerState(global_step=1)
    by_steps = TimeBudget(0.5, clock=MinuteClock())
    by_steps.on_train_begin(None, state, TrainerControl())
    args = SimpleNamespace(eval_strategy="steps", save_strategy="steps")
    control = by_steps.on_step_end(args, state, TrainerControl())
    assert control.should_training_stop and control.should_evaluate and control.should_save

    by_epoch = TimeBudget(0.5, clock=MinuteClock())
    by_epoch.on_train_begin(None, state, TrainerControl())
    args = SimpleNamespace(eval_strategy="epoch", save_strategy="epoch")
    control = by_epoch.on_step_end(args, state, TrainerControl())
    assert control.should_training_stop and not control.should_evaluate


def test_a_budget_never_crossed_never_stops():
    budget = TimeBudget(10.0, clock=MinuteClock())
    args = SimpleNamespace(eval_strategy="no", save_strategy="no")
    assert run_steps(budget, args, steps=10) == [] and not budget.stopped


def read_tsv(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_dvclive_gets_one_row_per_logged_step_of_the_kept_finite_keys(tmp_path):
    live = DvcLiveCallback(tmp_path / "live", keep=lambda key: key != "epoch")
    state = TrainerState(is_world_process_zero=True)
    for step, loss in [(1, 0.5), (2, 0.25), (3, math.nan)]:
        state.global_step = step
        logs = {"loss": loss, "epoch": step / 3, "eval_ndcg@10": 0.1 * step, "note": "text"}
        live.on_log(None, state, TrainerControl(), logs=logs)
    live.on_train_end(None, state, TrainerControl())

    curves = tmp_path / "live" / "plots" / "metrics"
    # The NaN loss of step 3 is left out; the evaluation curve has all three steps.
    assert read_tsv(curves / "train" / "loss.tsv")[1:] == [["1", "0.5"], ["2", "0.25"]]
    assert [row[0] for row in read_tsv(curves / "eval" / "ndcg@10.tsv")[1:]] == ["1", "2", "3"]
    assert not (curves / "train" / "epoch.tsv").exists()
    assert not (curves / "train" / "note.tsv").exists()


def test_dvclive_writes_nothing_outside_the_main_process(tmp_path):
    live = DvcLiveCallback(tmp_path / "live")
    state = TrainerState(is_world_process_zero=False, global_step=1)
    live.on_log(None, state, TrainerControl(), logs={"loss": 1.0})
    live.on_train_end(None, state, TrainerControl())
    assert not (tmp_path / "live").exists()


def test_plot_names_and_the_shared_callbacks():
    assert plot_name("eval_loss") == "eval/loss"
    assert plot_name("rewards/exact/mean") == "train/rewards/exact/mean"
    alone = training_run(5.0, None, plotted=lambda key: True)
    assert alone.callbacks == [alone.budget] and alone.budget.max_seconds == 300.0
    logged = training_run(5.0, "dvclive/x", plotted=lambda key: True)
    assert logged.callbacks[0] is logged.budget
    assert isinstance(logged.callbacks[1], DvcLiveCallback) and len(logged.callbacks) == 2
