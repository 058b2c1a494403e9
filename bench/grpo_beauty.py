"""SFT vs GRPO on real Amazon Beauty, on the CPU, in separate work folders.

Starts from a Beauty work folder in which ``bench/sft_beauty.py`` and the ``sft`` stage ran
(``data/download``, ``data/rqvae/codes.npy``, ``data/sft/model``):

    .venv/bin/python bench/grpo_beauty.py prepare --sft-work /tmp/beauty --work /tmp/gb \\
        [--labels LABELLED_ITEMS.jsonl]
    cd /tmp/gb && /work/main/.venv/bin/python /work/main/stages/grpo.py
    .venv/bin/python bench/grpo_beauty.py subset --work /tmp/gb --users 3000
    cd /tmp/gb/eval && /work/main/.venv/bin/python /work/main/stages/evaluate.py

``prepare`` links the SFT folder's data (copies its model), copies its ``params.yaml`` and adds
the project's ``grpo`` section (edit the copy: ``grpo.max_minutes``, ``grpo.max_prompts``...),
and writes
``data/label/quality.npy``: ``q_i`` of the ``label`` stage's rule
(:func:`deepinterestgr.labeling.item_quality`) on ``--labels`` (item interests with
``positive`` flags, e.g. the label bench's ``label.jsonl``), or 1.0 for every item without it
(then the quality bonus is a flat α on an exact hit). ``subset`` writes ``eval/``: a seeded
random subset of the users (ids renumbered 0..U-1; the prompt task ``history`` does not read
user ids) next to both models, so ``evaluate`` runs unchanged on fewer users.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import yaml

from deepinterestgr import io

ROOT = Path(__file__).resolve().parents[1]


def link(target: Path, name: Path) -> None:
    name.parent.mkdir(parents=True, exist_ok=True)
    if name.is_symlink() or name.exists():
        name.unlink()
    name.symlink_to(target.resolve())


def prepare(sft_work: Path, work: Path, labels: Path | None) -> None:
    for part in ("download", "rqvae"):
        link(sft_work / "data" / part, work / "data" / part)
    # A copy, so that a new SFT run there cannot change the model under a running GRPO here.
    shutil.rmtree(work / "data/sft/model", ignore_errors=True)
    shutil.copytree(sft_work / "data/sft/model", work / "data/sft/model")
    config = yaml.safe_load((sft_work / "params.yaml").read_text())
    config["grpo"] = yaml.safe_load((ROOT / "params.yaml").read_text())["grpo"]
    (work / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    items = io.read_items(work / "data/download/items.jsonl")
    if labels is not None:
        from deepinterestgr.labeling import item_quality

        rows = io.align_item_interests(io.read_item_interests(labels), len(items), labels)
        quality = item_quality(rows, config["label"]["empty_quality"])
    else:
        quality = np.ones(len(items), dtype=np.float32)
    io.save_array(work / "data/label/quality.npy", quality.astype(np.float32))
    (work / "data/mine").mkdir(parents=True, exist_ok=True)
    logging.info("%s: %s items, mean q_i %.3f", work, f"{len(items):,}", float(quality.mean()))


def subset(work: Path, num_users: int, seed: int) -> None:
    users = io.read_users(work / "data/download/users.jsonl")
    keep = np.sort(np.random.default_rng(seed).choice(len(users), num_users, replace=False))
    chosen = [io.UserSequence(k, users[i].source_id, users[i].items) for k, i in enumerate(keep)]
    evaluation = work / "eval"
    io.write_users(evaluation / "data/download/users.jsonl", chosen)
    link(work / "data/download/items.jsonl", evaluation / "data/download/items.jsonl")
    link(work / "data/rqvae", evaluation / "data/rqvae")
    link(work / "data/sft/model", evaluation / "data/sft/model")
    link(work / "data/grpo/model", evaluation / "data/grpo/model")
    (evaluation / "params.yaml").write_text((work / "params.yaml").read_text())
    logging.info(
        "%s: %s of %s users (seed %d)", evaluation, f"{num_users:,}", f"{len(users):,}", seed
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "subset"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sft-work", type=Path)
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.sft_work, args.work, args.labels)
    else:
        subset(args.work, args.users, args.seed)


if __name__ == "__main__":
    main()
