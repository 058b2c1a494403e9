"""Quantize item embeddings into Semantic IDs with an RQ-VAE (IEID, METHOD.md ``rqvae``).

Reads   data/embed/embeddings.npy       float32 [N, d], row i = item i
Writes  data/rqvae/model.pt             RQ-VAE state dict
        data/rqvae/codes.npy            int64 [N, L+1]: L RQ codes, then the collision suffix
        metrics/rqvae.json              collisions, code usage and perplexity, reconstruction
        plots/rqvae/loss/*.csv          per-epoch losses (DVC plots)
        plots/rqvae/usage/level_*.csv   items per code, most used first (DVC plots)
        plots/rqvae/reseeded/level_*.csv  dead codes re-seeded after each epoch (DVC plots)
Params  base.seed, rqvae.*
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("rqvae")  # all params checked, outputs locked: before the slow imports below

import logging
from pathlib import Path

from deepinterestgr.common import io
from deepinterestgr.common.params import load
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.items.rqvae import assign_codes, train_rqvae
from deepinterestgr.items.semantic_ids import (
    LEVEL_LETTERS,
    add_collision_suffix,
    check_capacity,
    check_collisions,
    collision_stats,
    level_usage,
    sid_diagnostics,
)

EMBEDDINGS = Path("data/embed/embeddings.npy")
OUT = io.RqvaeFiles(Path("data/rqvae"))
METRICS = Path("metrics/rqvae.json")
PLOTS = Path("plots/rqvae")

logger = logging.getLogger("rqvae")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base, params = load("base"), load("rqvae")
    seed_everything(base.seed)
    embeddings = io.load_array(EMBEDDINGS)
    logger.info("read %s embeddings of width %d", f"{len(embeddings):,}", embeddings.shape[1])
    limit = params.max_collision_rate
    check_capacity(len(embeddings), params.codebook_size, params.num_levels, limit)

    trained = train_rqvae(embeddings, params, base.seed)
    assignment = assign_codes(trained.model, embeddings, params.last_level)
    check_collisions(assignment.codes, params.codebook_size, limit)
    codes = add_collision_suffix(assignment.codes)

    with io.new_folder(OUT.folder) as folder:  # swapped in whole once every file is written
        files = io.RqvaeFiles(folder)
        io.write_state_dict(files.model, trained.model.state_dict())
        io.save_array(files.codes, codes)

    usages = level_usage(assignment.codes, params.codebook_size)
    diagnostics = sid_diagnostics(assignment.codes, usages)
    io.write_json(
        METRICS,
        {
            **diagnostics,
            "collision_rate_nearest": collision_stats(assignment.nearest_codes).collision_rate,
            "suffix_size": int(codes[:, -1].max()) + 1,  # 1 + size of the largest collision group
            "reconstruction_mse": assignment.reconstruction_mse,
            "reconstruction_relative": assignment.reconstruction_relative,
            "train_seconds": trained.seconds,
            "train_cpu_seconds": trained.cpu_seconds,
        },
    )
    with io.new_folder(PLOTS) as plots:
        for name in ("total", "reconstruction", "codebook", "commitment"):
            rows = ({"epoch": log.epoch, name: getattr(log, name)} for log in trained.history)
            io.write_csv(plots / "loss" / f"{name}.csv", rows)
        for level, usage in enumerate(usages):
            letter = LEVEL_LETTERS[level]
            rows = ({"epoch": e.epoch, "reseeded": e.reseeded[level]} for e in trained.history)
            io.write_csv(plots / "reseeded" / f"level_{letter}.csv", rows)
            ranked = sorted(usage.counts.tolist(), reverse=True)
            rows = ({"rank": rank, "items": count} for rank, count in enumerate(ranked))
            io.write_csv(plots / "usage" / f"level_{letter}.csv", rows)
    logger.info(
        "wrote %s SIDs: %.2f %% collided before the suffix (largest group %d), codes used %s",
        f"{len(codes):,}",
        100 * diagnostics["collision_rate"],
        diagnostics["largest_group"],
        "/".join(str(u.codes_used) for u in usages),
    )


if __name__ == "__main__":
    main()
