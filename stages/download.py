"""Stage ``download``: load the configured source into the pipeline's item and user files.

Reads:   params ``base.seed``, ``download.*``; for real sources the files in
         ``download.local_dir`` (relative paths resolve against the project root) or, when it
         is null, the public Amazon files, downloaded once into ``--raw`` (kept between runs).
Writes:  ``--dataset``: ``items.jsonl`` (io.Item, ids 0..N-1), ``users.jsonl`` (io.UserSequence,
         leave-one-out split), ``images/`` (generated item images, synthetic source only);
         ``--metrics`` (data statistics). Paths come from the command in ``dvc.yaml``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("download")  # all params checked, outputs locked: before the slow imports below

import logging
from pathlib import Path

from deepinterestgr.common import io
from deepinterestgr.common.artifacts import DatasetFiles, command_line_files
from deepinterestgr.common.params import load
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.data_sources import load_source, statistics, write_images

FILES = command_line_files("download")  # paths from the command in dvc.yaml

log = logging.getLogger("download")


def main() -> None:
    base, params = load("base"), load("download")
    seed_everything(base.seed)

    dataset = load_source(params, seed=base.seed, root=Path.cwd(), raw_dir=FILES.raw)

    with io.new_folder(FILES.dataset.folder) as folder:  # swapped in whole once written
        files = DatasetFiles(folder)
        num_items = io.write_items(files.items, dataset.items)
        num_users = io.write_users(files.users, dataset.users)
        num_images = write_images(folder, dataset.images)
    stats = statistics(dataset)
    io.write_json(FILES.metrics, stats)
    log.info(
        "%s: %s items, %s users, %s interactions (avg length %.2f, density %.4f%%), %s images",
        dataset.source,
        f"{num_items:,}",
        f"{num_users:,}",
        f"{stats['interactions']:,}",
        stats["avg_length"],
        100 * stats["density"],
        f"{num_images:,}",
    )


if __name__ == "__main__":
    main()
