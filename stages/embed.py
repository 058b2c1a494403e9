"""embed stage: embed each item's text followed by its positive interests (IEID).

Reads  ``--dataset`` (items), ``--labelled`` (labelled item interests).
Writes ``--embeddings``: ``embeddings.npy`` (float32 [N, d], row i = item i), ``texts.jsonl``
       ({item_id, text}: exactly what was embedded); ``--metrics`` (items, dim, texts encoded
       vs found in the cache).
Params base, embed (``embed.use_interests: false`` = shallow-text baseline). Embeddings are
cached by text hash in ``--embedding-cache`` (outside DVC), so unchanged items are not
re-encoded. Paths come from the command in ``dvc.yaml``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("embed")  # all params checked, outputs locked: before the slow imports below

import logging
import time

from deepinterestgr.common import io
from deepinterestgr.common.artifacts import EmbeddingFiles, command_line_files
from deepinterestgr.common.params import load
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.items.embedding import embed_catalogue

FILES = command_line_files("embed")  # paths from the command in dvc.yaml

log = logging.getLogger("embed")


def main() -> None:
    base, params = load("base"), load("embed")
    seed_everything(base.seed)
    items = io.read_items(FILES.dataset.items)
    labelled = FILES.labelled.items
    rows = io.align_item_interests(io.read_item_interests(labelled), len(items), labelled)
    start = time.perf_counter()
    texts, result = embed_catalogue(
        items, [row.interests for row in rows], params, FILES.embedding_cache
    )
    seconds = time.perf_counter() - start
    with io.new_folder(FILES.embeddings.folder) as folder:  # swapped in whole once written
        written = EmbeddingFiles(folder)
        io.save_array(written.vectors, result.vectors)
        texts_rows = ({"item_id": i, "text": t} for i, t in enumerate(texts))
        io.write_jsonl(written.texts, texts_rows)
    io.write_json(
        FILES.metrics,
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
