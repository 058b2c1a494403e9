"""Time the offline mining backend on the real Amazon Beauty benchmark and show samples.

Reads ``../shared/data/amazon/beauty/{items.jsonl,user_sequence.txt,interests.jsonl}``
(or ``--folder``), loads it with the ``download`` stage's benchmark loader (items in file
order, leave-one-out user sequences), runs
:func:`deepinterestgr.interests.offline_miner.mine_items_offline` and ``mine_users_offline``,
imports the precomputed LLM interests and merges both backends; logs wall times and sample items.

    python bench/offline_mining_beauty.py [--folder DIR] [--threads N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from deepinterestgr.common import io, params
from deepinterestgr.data_sources import benchmark
from deepinterestgr.data_sources.dataset import SkipLog
from deepinterestgr.interests.merge import merge_many
from deepinterestgr.interests.offline_miner import mine_items_offline, mine_users_offline
from deepinterestgr.interests.precomputed import read_precomputed
from deepinterestgr.items.text_encoder import BUNDLED_MINILM, encode_texts

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / ".." / "shared/data/amazon/beauty"
SAMPLES = (0, 1, 2, 5, 8)
logger = logging.getLogger("bench.offline_mining")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write mined rows here")
    parser.add_argument("--merge", action="store_true", help="also time the merge")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)

    dataset = benchmark.load(args.folder, SkipLog(max_rate=0.0))  # the download stage's loader
    items, users = list(dataset.items), list(dataset.users)
    logger.info("%s items, %s users", f"{len(items):,}", f"{len(users):,}")
    encode_texts(["warm up"], BUNDLED_MINILM)  # model load is not mining time

    start = time.perf_counter()
    mine = params.load("mine")
    item_rows = mine_items_offline(items, users, 5, BUNDLED_MINILM, mine.offline)
    item_seconds = time.perf_counter() - start
    start = time.perf_counter()
    user_rows = mine_users_offline(users, item_rows, 10, mine.user_half_life)
    user_seconds = time.perf_counter() - start
    counts = [len(row.interests) for row in item_rows]
    logger.info(
        "offline items: %.1f s (%s items, %.2f descriptors/item, %s with none); users: %.1f s",
        item_seconds,
        f"{len(items):,}",
        sum(counts) / len(counts),
        f"{counts.count(0):,}",
        user_seconds,
    )
    for i in SAMPLES:
        descriptors = [(x.descriptor, x.confidence) for x in item_rows[i].interests]
        logger.info("sample %d: %s -> %s", i, items[i].title, json.dumps(descriptors))
    logger.info("sample user 0: %s", [x.descriptor for x in user_rows[0].interests])

    if args.merge:
        precomputed = read_precomputed(args.folder / "interests.jsonl", items, "claude")
        start = time.perf_counter()
        merged = merge_many(
            [precomputed, item_rows],
            8,
            mine.merge_similarity,
            BUNDLED_MINILM,
            mine.merge_batch_size,
        )
        logger.info("merge of 2 backends: %.1f s", time.perf_counter() - start)
        agreeing = sum(1 for row in merged for x in row.interests if len(x.models) > 1)
        logger.info("merged interests proposed by both backends: %s", f"{agreeing:,}")
        for i in SAMPLES[:2]:
            logger.info("merged %d: %s", i, [(x.descriptor, x.models) for x in merged[i].interests])
    if args.out:
        io.write_item_interests(args.out / "items.jsonl", item_rows)
        io.write_user_interests(args.out / "users.jsonl", user_rows)


if __name__ == "__main__":
    main()
