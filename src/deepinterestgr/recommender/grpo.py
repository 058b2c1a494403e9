"""GRPO with the Interest-Aware Reward, on TRL's ``GRPOTrainer`` (METHOD.md, grpo).

TRL samples each group of G completions with ``model.generate``; it cannot pass a prefix
function through ``generation_kwargs``, and ``num_beams`` there makes every candidate of a group
the same (zero advantage, zero gradient). So the one extension is the rollout: TRL's
``rollout_func`` hook (trl >= 1.x) gets the G copies of each prompt that its ``RepeatSampler``
lays side by side, and :func:`build_rollout` answers them with the G beams of one constrained
beam search, best first, so a group holds G distinct valid SIDs. Everything else (advantage
``(R - mean_group) / (std_group + eps)``, clipped ratio, KL to the reference model, optimiser)
is TRL's own; TRL's eps is 1e-4 (METHOD.md writes 1e-6), which only matters for groups whose
rewards are all but equal.

Beams are not samples from the policy; the update is GRPO's clipped policy gradient on a
deterministic, rank-ordered candidate set, as in MiniOneRec's beam-search rollouts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deepinterestgr.common.io import UserSequence
from deepinterestgr.common.params import GrpoParams
from deepinterestgr.items.semantic_ids import format_sid
from deepinterestgr.recommender.constrained_decoding import SidPrefixTree, constrained_beam_search
from deepinterestgr.recommender.rewards import TERMS, reward_weights
from deepinterestgr.recommender.trainer_hooks import train_quietly, training_run, use_own_log_probs

logger = logging.getLogger(__name__)

RolloutFunc = Callable[[list[str], Any], dict[str, list]]


class RLPrompt(NamedTuple):
    """One GRPO prompt: model input, the SID string it should write, ``q_target``, exclusions.

    ``prompt_ids`` are token ids exactly as the recommender reads them at inference
    (:meth:`deepinterestgr.recommender.prompt.PromptWriter.prompt`); ``exclude`` holds item ids
    the beams may not return (the user's history, as in evaluation).
    """

    prompt_ids: tuple[int, ...]
    target: str
    quality: float
    exclude: tuple[int, ...]


# --------------------------------------------------------------------------- prompts


class PromptSet(NamedTuple):
    prompts: list[RLPrompt]
    skipped_repeat: int  # users whose target is already in their history (never a candidate)
    skipped_short: int  # users with fewer than two training items


def rl_prompts(
    users: Sequence[UserSequence],
    prompt_of: Callable[[int, Sequence[int]], list[int]],
    codes: np.ndarray,
    quality: np.ndarray,
    max_prompts: int,
    rng: np.random.Generator,
) -> PromptSet:
    """One GRPO prompt per user from the training part only: history ``train[:-1]``, target
    ``train[-1]``, so validation and test targets stay unseen (leave-one-out, METHOD.md).

    ``prompt_of(user_id, history)`` writes the recommender's inference prompt; ``codes`` int
    ``[N, L+1]``; ``quality`` float ``[N]`` (``q_i``). ``max_prompts`` > 0 keeps that many users
    drawn with ``rng`` (in user order). The history is excluded from the beams, as in evaluation;
    a user whose target is in its own history could never be rewarded and is skipped.
    """
    if len(quality) != len(codes):
        raise ValueError(f"quality has {len(quality):,} items, codes {len(codes):,}")
    eligible, repeat, short = [], 0, 0
    for user in users:
        if len(user.train) < 2:
            short += 1
        elif user.train[-1] in user.train[:-1]:
            repeat += 1
        else:
            eligible.append(user)
    if 0 < max_prompts < len(eligible):
        keep = np.sort(rng.choice(len(eligible), size=max_prompts, replace=False))
        eligible = [eligible[i] for i in keep]
    prompts = [
        RLPrompt(
            prompt_ids=tuple(prompt_of(user.user_id, user.train[:-1])),
            target=format_sid(codes[user.train[-1]].tolist()),
            quality=float(quality[user.train[-1]]),
            exclude=tuple(sorted(set(user.train[:-1]))),
        )
        for user in eligible
    ]
    return PromptSet(prompts, repeat, short)


# --------------------------------------------------------------------------- rollout


def build_rollout(
    prompts: Sequence[RLPrompt],
    tokenizer: PreTrainedTokenizerBase,
    tree: SidPrefixTree,
) -> tuple[Dataset, RolloutFunc]:
    """TRL's training set and a ``rollout_func`` whose groups are constrained beams.

    The dataset has columns ``prompt`` (a readable key: ``#k`` and the decoded prompt),
    ``target`` and ``quality``; the reward functions receive the last two. TRL hands the
    rollout only the ``prompt`` strings, each repeated G times side by side (its
    ``RepeatSampler``); the rollout finds the prompt's token ids and exclusions by that key,
    runs one constrained beam search with G beams per distinct prompt and returns, in TRL's
    order, ``prompt_ids``, ``completion_ids`` (the ``L+1`` SID tokens: the recommender never
    learnt an end token after a SID), ``logprobs`` (None: TRL recomputes them) and ``beam_rank``
    (0 = best beam), which TRL forwards to the reward functions.
    """
    keys = [f"#{k} {tokenizer.decode(p.prompt_ids)}" for k, p in enumerate(prompts)]
    by_key = dict(zip(keys, prompts, strict=True))
    dataset = Dataset.from_dict(
        {
            "prompt": keys,
            "target": [p.target for p in prompts],
            "quality": [float(p.quality) for p in prompts],
        }
    )

    def rollout(batch: list[str], trainer: Any) -> dict[str, list]:
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        if len(batch) % group:
            raise ValueError(f"{len(batch)} prompts do not split into groups of {group}")
        unique = batch[::group]
        for k, key in enumerate(unique):
            if any(other != key for other in batch[k * group : (k + 1) * group]):
                raise ValueError(f"group {k} mixes prompts; expected {group} copies side by side")
        chosen = [by_key[key] for key in unique]
        model = trainer.accelerator.unwrap_model(trainer.model)
        groups = top_candidates(model, chosen, tree, group, tokenizer.pad_token_id)
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "beam_rank": []}
        for prompt, sids in zip(chosen, groups, strict=True):
            check_group(sids, group)
            for rank, sid in enumerate(sids):
                out["prompt_ids"].append(list(prompt.prompt_ids))
                out["completion_ids"].append(sid)
                out["beam_rank"].append(rank)
        out["logprobs"] = None
        return out

    return dataset, rollout


def top_candidates(
    model: torch.nn.Module,
    prompts: Sequence[RLPrompt],
    tree: SidPrefixTree,
    size: int,
    pad_token_id: int,
) -> list[list[list[int]]]:
    """Per prompt, the SID token ids of its ``size`` best allowed items, best first.

    The beam search masks every prefix whose items are all excluded, so it returns ``size``
    allowed items unless fewer exist; then GRPO cannot form a group, which is an error.
    """
    beams = constrained_beam_search(
        model,
        [p.prompt_ids for p in prompts],
        tree,
        size,
        pad_token_id,
        exclude=[p.exclude for p in prompts],
    )
    if (beams.item_ids < 0).any():
        raise ValueError(f"fewer than G={size} allowed items for a prompt; lower G")
    return beams.token_ids.tolist()


def check_group(beams: Sequence[Sequence[int]], size: int) -> None:
    """Fail unless ``beams`` are ``size`` distinct non-empty token sequences."""
    if len(beams) != size:
        raise ValueError(f"the beam search returned {len(beams)} candidates, expected {size}")
    if len({tuple(b) for b in beams}) != size or any(len(b) == 0 for b in beams):
        raise ValueError(f"the beam search returned empty or duplicate candidates: {beams}")


# --------------------------------------------------------------------------- logging


# Logged per step as DVC plots: loss, KL, the total reward and each term's (unweighted) mean.
PLOTTED = ("loss", "kl", "reward", "reward_std", "entropy", "grad_norm", "frac_reward_zero_std")


def plotted(key: str) -> bool:
    """The GRPO log keys worth a curve: :data:`PLOTTED` and every ``rewards/<term>/mean``."""
    return key in PLOTTED or (key.startswith("rewards/") and key.endswith("/mean"))


# --------------------------------------------------------------------------- training


class GRPOOutcome(NamedTuple):
    steps: int  # optimiser steps run
    seconds: float  # wall-clock training time
    stopped_by_time: bool  # the max_minutes budget ended training
    history: list[dict[str, float]]  # TRL's per-step log rows


def grpo_config(config: GrpoParams, seed: int, output_dir: str | Path) -> Any:
    """``trl.GRPOConfig`` of ``config.trainer`` as written in params, plus what is set here:
    the seed, TRL's ``reward_weights`` from ``config.weights``, DVCLive instead of TRL's
    reporting, and the device's CPU / pinned-memory settings."""
    from trl import GRPOConfig  # heavy import, only where training happens

    return GRPOConfig(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        report_to="none",  # curves go to DVCLive through the shared callback
        reward_weights=reward_weights(config.weights),
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),  # pinned pages only help a GPU copy
        **config.trainer,
    )


def train_grpo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    rollout: RolloutFunc,
    reward_funcs: list[Callable[..., list[float]]],
    config: GrpoParams,
    seed: int,
    output_dir: str | Path,
    peft_config: Any = None,
    live_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, GRPOOutcome]:
    """Run GRPO on ``model`` (updated in place; a LoRA-wrapped copy when ``peft_config``).

    ``config.trainer`` passes straight into ``trl.GRPOConfig``; only the seed, the reward
    weights (``config.weights`` in :data:`deepinterestgr.recommender.rewards.TERMS` order, the
    order of :func:`deepinterestgr.recommender.rewards.trl_reward_functions`), logging and the
    device's settings are set here. Returns the trained model (LoRA merged into the backbone)
    and a :class:`GRPOOutcome`. ``output_dir`` only receives TRL's scratch files: nothing is
    checkpointed. ``live_dir``: where the per-step curves of :func:`plotted` keys go (None: not
    written).
    """
    from trl import GRPOTrainer  # heavy import, only where training happens

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is the supported hook
    if len(reward_funcs) != len(TERMS):
        raise ValueError(
            f"expected {len(TERMS)} reward functions ({TERMS}), got {len(reward_funcs)}"
        )
    args = grpo_config(config, seed, output_dir)
    run = training_run(config.max_minutes, live_dir, plotted)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=run.callbacks,
        peft_config=peft_config,
        rollout_func=rollout,
    )
    # Completions are scored with the model's own head (the item-level model's tree-normalised
    # one) or a plain head on their positions; a pretrained backbone keeps TRL's kernel.
    core = trainer.model.get_base_model() if peft_config is not None else trainer.model
    head = use_own_log_probs(core, plain_head=peft_config is None)
    if trainer.ref_model is not None:
        use_own_log_probs(trainer.ref_model, plain_head=peft_config is None)
    logger.info("completions scored by the %s head", head)
    _, seconds = train_quietly(trainer)
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()
    history = [row for row in trainer.state.log_history if "loss" in row]
    outcome = GRPOOutcome(trainer.state.global_step, seconds, run.budget.stopped, history)
    logger.info(
        "GRPO: %s steps in %.1f s%s",
        f"{outcome.steps:,}",
        seconds,
        " (stopped by the time budget)" if outcome.stopped_by_time else "",
    )
    return trained, outcome


def curve_summary(history: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Start and end of each logged curve: the mean over the first and the last quarter of the
    steps (at least one step each), for the total reward, KL, loss and each reward term."""
    keys = ["reward", "kl", "loss", *(f"rewards/{term}/mean" for term in TERMS)]
    span = max(1, len(history) // 4)
    summary = {}
    for key in keys:
        values = [row[key] for row in history if key in row]
        if values:
            summary[key] = {
                "start": round(sum(values[:span]) / len(values[:span]), 5),
                "end": round(sum(values[-span:]) / len(values[-span:]), 5),
            }
    return summary
