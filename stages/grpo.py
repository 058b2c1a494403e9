"""Stage ``grpo``: reinforce the SFT recommender with the Interest-Aware Reward (METHOD.md, grpo).

Reads ``data/sft/model/`` (model, tokenizer, prompt spec), ``data/rqvae/codes.npy`` (int64
``[N, L+1]``), ``data/label/quality.npy`` (float32 ``[N]``, ``q_i``),
``data/download/users.jsonl`` and, when the prompt spec uses user interests,
``data/mine/users.jsonl``. Writes ``data/grpo/model/`` (same format as ``data/sft/model/``), the
per-step curves ``dvclive/grpo/`` (loss, KL, total reward, each reward term's mean) and
``metrics/grpo.json`` (steps, wall time, prompts, start and end of each curve).
Params: ``base.seed``, ``grpo``, ``sft.backbone`` (LoRA when it is ``pretrained``).
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("grpo")  # all params checked, outputs locked: before the slow imports below

import logging
import tempfile
from pathlib import Path

from deepinterestgr.common import params
from deepinterestgr.common.io import (
    DatasetFiles,
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

DATASET = DatasetFiles(Path("data/download"))
SFT_MODEL = Path("data/sft/model")
CODES = Path("data/rqvae/codes.npy")
QUALITY = Path("data/label/quality.npy")
USER_INTERESTS = Path("data/mine/users.jsonl")
OUTPUT = Path("data/grpo")
LIVE = Path("dvclive/grpo")
METRICS = Path("metrics/grpo.json")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    base, config = params.load("base"), params.load("grpo")
    backbone = params.load("sft").backbone
    rng = seed_everything(base.seed)

    model, tokenizer, spec = load_recommender(SFT_MODEL)
    users, codes, quality = read_users(DATASET.users), load_array(CODES), load_array(QUALITY)
    if quality.shape != (len(codes),):
        raise ValueError(f"{QUALITY}: shape {quality.shape}, expected ({len(codes)},) as {CODES}")
    texts = None
    if spec.reads_user_text:
        texts = user_texts(users, read_user_interests(USER_INTERESTS))
    sid_ids = sid_token_ids(tokenizer, codes)
    writer = prompt_writer(tokenizer, sid_ids, spec, texts)
    made = rl_prompts(users, writer.prompt, codes, quality, config.max_prompts, rng)
    logging.info(
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
            live_dir=LIVE,
        )
    with new_folder(OUTPUT / "model") as model_dir:  # swapped in whole once written
        save_recommender(model_dir, trained, tokenizer, spec)
    write_json(
        METRICS,
        {
            "steps": outcome.steps,
            "wall_time_s": round(outcome.seconds, 1),
            "stopped_by_time_budget": outcome.stopped_by_time,
            "prompts": len(made.prompts),
            "curves": curve_summary(outcome.history),
        },
    )
    logging.info("wrote %s and %s", OUTPUT / "model", METRICS)


if __name__ == "__main__":
    main()
