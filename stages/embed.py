"""embed stage: embed each item's text followed by its positive interests (IEID).

Reads  data/download/items.jsonl (items), data/label/items.jsonl (labelled interests).
Writes data/embed/embeddings.npy (float32 [N, d], row i = item i),
       data/embed/texts.jsonl ({item_id, text}: exactly what was embedded),
       metrics/embed.json (items, dim, texts encoded vs found in the cache).
Params base, embed (``embed.use_interests: false`` = shallow-text baseline). Embeddings are
cached by text hash in data/cache/embeddings (outside DVC), so unchanged items are not
re-encoded.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("embed")  # all params checked, outputs locked: before the slow imports below

import logging
import time
from pathlib import Path

from deepinterestgr.common import io
from deepinterestgr.common.params import load
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.items.embedding import embed_catalogue

ITEMS = Path("data/download/items.jsonl")
LABELLED = Path("data/label/items.jsonl")
OUT = Path("data/embed")
CACHE = Path("data/cache/embeddings")
METRICS = Path("metrics/embed.json")

log = logging.getLogger("embed")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base, params = load("base"), load("embed")
    seed_everything(base.seed)
    items = io.read_items(ITEMS)
    rows = io.align_item_interests(io.read_item_interests(LABELLED), len(items), LABELLED)
    start = time.perf_counter()
    texts, result = embed_catalogue(items, [row.interests for row in rows], params, CACHE)
    seconds = time.perf_counter() - start
    with io.new_folder(OUT) as folder:  # swapped in whole once every file is written
        io.save_array(folder / "embeddings.npy", result.vectors)
        texts_rows = ({"item_id": i, "text": t} for i, t in enumerate(texts))
        io.write_jsonl(folder / "texts.jsonl", texts_rows)
    io.write_json(
        METRICS,
        {
            "items": len(items),
            "dim": int(result.vectors.shape[1]),
            "encoder": params.encoder,
            "use_interests": params.use_interests,
            "encoded": result.encoded,
            "cached": result.cached,
        },
    )
    log.info(
        "embedded %s items -> %s float32 (%s encoded, %s cached) in %.1f s",
        f"{len(items):,}",
        "x".join(map(str, result.vectors.shape)),
        f"{result.encoded:,}",
        f"{result.cached:,}",
        seconds,
    )


if __name__ == "__main__":
    main()
