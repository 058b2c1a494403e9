"""Run the ``sft`` and ``evaluate`` stages on real Amazon Beauty in a separate work folder.

Prepares the inputs those stages read, then they run unchanged from the work folder:

    .venv/bin/python bench/sft_beauty.py prepare --work /tmp/beauty [--codes CODES.npy]
        [--interests precomputed|none]
    cd /tmp/beauty && /work/main/.venv/bin/python /work/main/stages/sft.py
    cd /tmp/beauty && /work/main/.venv/bin/python /work/main/stages/evaluate.py
    .venv/bin/python bench/sft_beauty.py test --work /tmp/beauty   # test split only, timed
        [--model data/grpo/model] [--device cuda]
    .venv/bin/python bench/sft_beauty.py set --work /tmp/beauty sft.trainer.num_train_epochs=8

``set`` writes dotted ``key=value`` overrides (values parsed as YAML) into the work folder's
``params.yaml``, as ``dvc exp run -S`` does for the project.

``prepare`` writes ``data/download`` (the benchmark split leave-one-out, item ids in the order
of its ``items.jsonl``), ``data/label/items.jsonl`` (the LLM-mined descriptors of
``../shared/data/amazon/beauty/interests.jsonl``, or none), an empty ``data/mine/users.jsonl``
(no user-side interests) and ``data/rqvae/codes.npy``:
copied from ``--codes`` (e.g. the ``rqvae`` stage's output on Beauty) or, without it, built
here: MiniLM embeddings of title, brand, category path (and the descriptors when
``--interests precomputed``), then the project's RQ-VAE with the ``rqvae`` params of the work
folder's ``params.yaml`` and the collision suffix. ``params.yaml`` is copied from the project
once (edit the copy, never the project's) with ``download`` pointed at the benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml

from deepinterestgr import io
from deepinterestgr.data_sources.benchmark import load as load_benchmark
from deepinterestgr.data_sources.dataset import SkipLog

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = (ROOT / "../shared/data/amazon/beauty").resolve()


def precomputed_interests(items: list[io.Item]) -> list[io.ItemInterests]:
    by_asin = {}
    for _, record in io.iter_jsonl(BEAUTY / "interests.jsonl"):
        by_asin[record["asin"]] = tuple(
            io.Interest(d["descriptor"], float(d["confidence"]), ("precomputed",))
            for d in record["descriptors"]
        )
    return [io.ItemInterests(item.item_id, by_asin.get(item.source_id, ())) for item in items]


def build_codes(items, interests, work: Path) -> np.ndarray:
    from deepinterestgr.config import load_section
    from deepinterestgr.params import RqvaeParams
    from deepinterestgr.rqvae import assign_codes, train_rqvae
    from deepinterestgr.semantic_ids import add_collision_suffix
    from deepinterestgr.text_encoder import encode_texts

    texts = []
    for item, row in zip(items, interests, strict=True):
        path = " > ".join(item.categories[0]) if item.categories else ""
        parts = [item.title or "", item.brand or "", path, *(i.descriptor for i in row.interests)]
        texts.append("; ".join(p for p in parts if p))
    embeddings = encode_texts(texts, batch_size=128, show_progress=True)
    params = load_section(work / "params.yaml", "rqvae", RqvaeParams)
    trained = train_rqvae(embeddings, params, seed=42)
    return add_collision_suffix(assign_codes(trained.model, embeddings, params.last_level).codes)


def prepare(work: Path, codes_path: Path | None, interests: str) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "params.yaml").exists():
        config = yaml.safe_load((ROOT / "params.yaml").read_text())
        config["download"].update(source="benchmark", local_dir=str(BEAUTY))
        (work / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dataset = load_benchmark(BEAUTY, SkipLog(0.0))
    items, users = list(dataset.items), list(dataset.users)
    io.write_items(work / "data/download/items.jsonl", items)
    io.write_users(work / "data/download/users.jsonl", users)
    rows = (
        precomputed_interests(items)
        if interests == "precomputed"
        else [io.ItemInterests(i.item_id, ()) for i in items]
    )
    io.write_item_interests(work / "data/label/items.jsonl", rows)
    io.write_user_interests(work / "data/mine/users.jsonl", [])  # no user-side interests
    target = work / "data/rqvae/codes.npy"
    target.parent.mkdir(parents=True, exist_ok=True)
    if codes_path is not None:
        shutil.copyfile(codes_path, target)
    else:
        io.save_array(target, build_codes(items, rows, work))
    codes = io.load_array(target)
    if codes.shape[0] != len(items):
        raise ValueError(f"{target}: {codes.shape[0]} rows for {len(items)} items")
    logging.info(
        "%s: %s items, %s users, SIDs %s, interests %s",
        work,
        f"{len(items):,}",
        f"{len(users):,}",
        codes.shape,
        interests,
    )


def set_params(work: Path, overrides: list[str]) -> None:
    """Apply ``dotted.key=value`` overrides to ``work/params.yaml``; every key must exist."""
    path = work / "params.yaml"
    config = yaml.safe_load(path.read_text())
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise ValueError(f"override '{override}' is not key=value")
        *parents, leaf = key.split(".")
        section = config
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or leaf not in section:
            raise KeyError(f"{path}: no key '{key}'")
        section[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_only(work: Path, device: str, model: str) -> None:
    """Test-split metrics of ``work/<model>`` (e.g. ``data/sft/model``) with the work folder's
    evaluate params, written to ``work/metrics/beauty_test_<sft|grpo>.json``."""
    from deepinterestgr.config import load_section
    from deepinterestgr.generative_evaluation import evaluate_recommender
    from deepinterestgr.generative_model import load_recommender
    from deepinterestgr.params import EvaluateParams

    config = load_section(work / "params.yaml", "evaluate", EvaluateParams)
    users = io.read_users(work / "data/download/users.jsonl")
    codes = io.load_array(work / "data/rqvae/codes.npy")
    evaluation = evaluate_recommender(
        load_recommender(work / model, device),
        codes,
        users,
        "test",
        config.ks,
        config.exclude_history,
        config.num_beams,
        config.batch_size,
    )
    report = {
        "split": "test",
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "threads": torch.get_num_threads(),
        **evaluation.to_dict(),
    }
    io.write_json(work / f"metrics/beauty_test_{Path(model).parent.name}.json", report)
    print(json.dumps(report))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "set", "test"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--codes", type=Path, default=None)
    parser.add_argument("--interests", choices=["precomputed", "none"], default="precomputed")
    parser.add_argument("--device", default="cpu", help="test: where the model runs (cpu, cuda)")
    parser.add_argument("--model", default="data/sft/model", help="test: the recommender folder")
    parser.add_argument("overrides", nargs="*", help="set: dotted.key=value ...")
    args = parser.parse_intermixed_args()
    if args.command == "prepare":
        prepare(args.work, args.codes, args.interests)
    elif args.command == "set":
        set_params(args.work, args.overrides)
    else:
        test_only(args.work, args.device, args.model)


if __name__ == "__main__":
    main()
