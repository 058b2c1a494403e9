"""Loaders behind the ``download`` stage: four sources, one output schema.

=============  ===============================================================================
``synthetic``  generated from the seed, offline (the default; see :mod:`.synthetic`)
``benchmark``  the preprocessed ``user_sequence.txt`` + ``items.jsonl`` format (:mod:`.benchmark`)
``amazon2014``  raw ``reviews_<Category>_5.json.gz`` + ``meta_<Category>.json.gz`` (:mod:`.amazon`)
``amazon2023``  raw ``<Category>.jsonl.gz`` + ``meta_<Category>.jsonl.gz`` (:mod:`.amazon`)
=============  ===============================================================================

Each returns a :class:`Dataset`: items with ids 0..N-1, users with chronological item ids
(split leave-one-out by :class:`deepinterestgr.common.io.UserSequence`), and skip counts.
"""

from __future__ import annotations

from pathlib import Path

from deepinterestgr.common.params import DownloadParams
from deepinterestgr.data_sources.dataset import (
    Dataset,
    SkipLog,
    SourceError,
    statistics,
    write_images,
)

__all__ = ["Dataset", "SkipLog", "SourceError", "load_source", "statistics", "write_images"]


def load_source(params: DownloadParams, seed: int, root: Path, raw_dir: Path) -> Dataset:
    """Load the source ``params.source`` names.

    ``root``: the project root; a relative ``params.local_dir`` is resolved against it.
    ``raw_dir``: where downloaded raw files are kept between runs (Amazon sources only).
    """
    local_dir = None if params.local_dir is None else (root / params.local_dir).resolve()
    skips = SkipLog(params.max_skip_rate)
    if params.source == "synthetic":
        from deepinterestgr.data_sources import synthetic

        return synthetic.generate(params.synthetic, seed)
    if params.source == "benchmark":
        from deepinterestgr.data_sources import benchmark

        if local_dir is None:
            raise SourceError("download.source=benchmark needs download.local_dir (a folder)")
        return benchmark.load(local_dir, skips)
    from deepinterestgr.data_sources import amazon

    files = amazon.locate(params.source, params.category, local_dir, raw_dir)
    return amazon.load(params.source, files, params.kcore, skips)
