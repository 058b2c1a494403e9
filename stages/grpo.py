"""Stage ``grpo``: reinforce the SFT recommender with the Interest-Aware Reward (METHOD.md, grpo).

Reads ``--sft`` (``model/``: model, tokenizer, prompt spec), ``--sids`` (``codes.npy``, int64
``[N, L+1]``), ``--labelled`` (``quality.npy``, float32 ``[N]``, ``q_i``), ``--dataset`` (users)
and, when the prompt spec uses user interests, ``--interests``. Writes ``--recommender``
(``model/``, same format as the SFT model), the per-step curves ``--live`` (loss, KL, total
reward, each reward term's mean) and ``--metrics`` (steps, wall time, prompts, start and end of
each curve). Paths come from the command in ``dvc.yaml``.
Params: ``base.seed``, ``grpo``, ``sft.backbone`` (LoRA when it is ``pretrained``).
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("grpo")  # all params checked, outputs locked: before the slow imports below

import logging
import tempfile

from deepinterestgr.common import params
from deepinterestgr.common.artifacts import command_line_files
from deepinterestgr.common.io import (
    load_array,
    new_folder,
    read_user_interests,
    read_users,
    write_json,
)
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.recommender.constrained_decoding import SidPrefixTree
from deepinterestgr.recommender.generative_model import load_recommender, save_recommender
from deepinterestgr.recommender.grpo import build_rollout, curve_summary, rl_prompts, train_grpo
from deepinterestgr.recommender.prompt import prompt_writer, user_texts
from deepinterestgr.recommender.rewards import trl_reward_functions
from deepinterestgr.recommender.sid_tokenizer import sid_token_ids

FILES = command_line_files("grpo")  # paths from the command in dvc.yaml
log = logging.getLogger("grpo")


def main() -> None:
    base, config = params.load("base"), params.load("grpo")
    backbone = params.load("sft").backbone
    rng = seed_everything(base.seed)

    model, tokenizer, spec = load_recommender(FILES.sft.model)
    users, codes, quality = (
        read_users(FILES.dataset.users),
        load_array(FILES.sids.codes),
        load_array(FILES.labelled.quality),
    )
    if quality.shape != (len(codes),):
        raise ValueError(
            f"{FILES.labelled.quality}: shape {quality.shape}, "
            f"expected ({len(codes)},) as {FILES.sids.codes}"
        )
    texts = None
    if spec.reads_user_text:
        texts = user_texts(users, read_user_interests(FILES.interests.users))
    sid_ids = sid_token_ids(tokenizer, codes)
    writer = prompt_writer(tokenizer, sid_ids, spec, texts)
    made = rl_prompts(users, writer.prompt, codes, quality, config.max_prompts, rng)
    log.info(
        "%s prompts from %s users (%s skipped: target in history, %s: too short)",
        f"{len(made.prompts):,}",
        f"{len(users):,}",
        f"{made.skipped_repeat:,}",
        f"{made.skipped_short:,}",
    )

    dataset, rollout = build_rollout(made.prompts, tokenizer, SidPrefixTree.from_codes(sid_ids))
    catalogue = {tuple(row) for row in codes.tolist()}
    rewards = trl_reward_functions(catalogue, num_levels=codes.shape[1] - 1)
    peft_config = None
    if backbone == "pretrained":
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **config.lora)
    with tempfile.TemporaryDirectory(prefix="grpo-") as scratch:
        trained, outcome = train_grpo(
            model,
            tokenizer,
            dataset,
            rollout,
            rewards,
            config,
            base.seed,
            scratch,
            peft_config=peft_config,
            live_dir=FILES.live,
        )
    with new_folder(FILES.recommender.model) as model_dir:  # swapped in whole once written
        save_recommender(model_dir, trained, tokenizer, spec)
    write_json(
        FILES.metrics,
        {
            "steps": outcome.steps,
            "wall_time_s": round(outcome.seconds, 1),
            "stopped_by_time_budget": outcome.stopped_by_time,
            "prompts": len(made.prompts),
            "curves": curve_summary(outcome.history),
        },
    )
    log.info("wrote %s and %s", FILES.recommender.model, FILES.metrics)


if __name__ == "__main__":
    main()
