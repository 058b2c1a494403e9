"""Measure the label and embed libraries on real Amazon Beauty (12,101 items), on the CPU.

Each phase runs in its own process so its peak memory (ru_maxrss) is its own:

    .venv/bin/python bench/label_embed_beauty.py label --interests precomputed --work /tmp/b
    .venv/bin/python bench/label_embed_beauty.py label --interests offline --work /tmp/b
    .venv/bin/python bench/label_embed_beauty.py embed --work /tmp/b     # after a label phase

``--interests precomputed``: the LLM-mined descriptors of ../shared/data/amazon/beauty/
interests.jsonl; ``offline``: :func:`deepinterestgr.offline_miner.mine_items_offline`.
Params come from params.yaml (sections label, embed; mine.offline for the miner if present).
Embedding caches live under ``--work`` (delete it for a cold run). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import torch

from deepinterestgr import io
from deepinterestgr.data_sources.benchmark import load as load_benchmark
from deepinterestgr.data_sources.dataset import SkipLog
from deepinterestgr.embedding import (
    EmbeddingCache,
    embed_catalogue,
    embed_texts,
    evidence_text,
    sentence_encoder,
)
from deepinterestgr.labeling import label_interests, make_offline_judge
from deepinterestgr.params import load

BEAUTY = Path(__file__).resolve().parents[1] / "../shared/data/amazon/beauty"


def precomputed_interests(items: list[io.Item], path: Path) -> list[io.ItemInterests]:
    by_asin = {}
    for _, record in io.iter_jsonl(path):
        by_asin[record["asin"]] = tuple(
            io.Interest(d["descriptor"], float(d["confidence"]), ("precomputed",))
            for d in record["descriptors"]
        )
    return [io.ItemInterests(item.item_id, by_asin.get(item.source_id, ())) for item in items]


def offline_interests(items, users) -> list[io.ItemInterests]:
    from deepinterestgr.offline_miner import mine_items_offline
    from deepinterestgr.text_encoder import BUNDLED_MINILM

    return mine_items_offline(items, users, 5, BUNDLED_MINILM)


def run_label(work: Path, source: str) -> dict:
    dataset = load_benchmark(BEAUTY.resolve(), SkipLog(0.0))
    items = list(dataset.items)
    params, seed = load("label"), load("base").seed
    start = time.perf_counter()
    if source == "precomputed":
        rows = precomputed_interests(items, BEAUTY / "interests.jsonl")
    else:
        rows = offline_interests(items, list(dataset.users))
    mine_seconds = time.perf_counter() - start
    io.write_items(work / "items.jsonl", items)
    cache = EmbeddingCache(work / "cache")
    encoder = sentence_encoder(params.encoder, True, params.batch_size)

    def embed(texts):
        return embed_texts(texts, encoder, cache, params.encoder, True, params.batch_size).vectors

    start = time.perf_counter()
    result = label_interests(
        io.align_item_interests(rows, len(items), source),
        [evidence_text(item, params.evidence) for item in items],
        embed,
        make_offline_judge(params.offline_judge.lexical_weight, params.offline_judge.threshold),
        params.sample_size,
        params.test_fraction,
        params.classifier,
        params.threshold,
        params.empty_quality,
        params.ece_bins,
        seed,
    )
    io.write_item_interests(work / f"label-{source}.jsonl", result.rows)
    io.write_item_interests(work / "label.jsonl", result.rows)
    io.write_jsonl(work / f"judged-{source}.jsonl", result.judged)
    return {
        "phase": "label",
        "interests_from": source,
        "mine_s": round(mine_seconds, 1),
        "label_s": round(time.perf_counter() - start, 1),
        **result.metrics,
    }


def run_embed(work: Path) -> dict:
    params = load("embed")
    items = io.read_items(work / "items.jsonl")
    rows = io.align_item_interests(
        io.read_item_interests(work / "label.jsonl"), len(items), "label"
    )
    start = time.perf_counter()
    texts, result = embed_catalogue(
        items, [r.interests for r in rows], params, work / "embed-cache"
    )
    seconds = time.perf_counter() - start
    io.save_array(work / "embeddings.npy", result.vectors)
    return {
        "phase": "embed",
        "items": len(items),
        "dim": int(result.vectors.shape[1]),
        "encoded": result.encoded,
        "cached": result.cached,
        "embed_s": round(seconds, 1),
        "mean_text_chars": round(sum(map(len, texts)) / len(texts), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["label", "embed"])
    parser.add_argument("--interests", choices=["precomputed", "offline"], default="precomputed")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    report = run_label(args.work, args.interests) if args.phase == "label" else run_embed(args.work)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["threads"] = args.threads
    print(json.dumps(report))


if __name__ == "__main__":
    main()
