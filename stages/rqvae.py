"""Quantize item embeddings into Semantic IDs with an RQ-VAE (IEID, METHOD.md ``rqvae``).

Reads   --embeddings: embeddings.npy   float32 [N, d], row i = item i
Writes  --sids: codes.npy              int64 [N, L+1]: L RQ codes, then the collision suffix
        --rqvae: model.pt              RQ-VAE state dict
        --metrics                      collisions, code usage and perplexity, reconstruction
        --plots: loss/*.csv            per-epoch losses (DVC plots)
                 usage/level_*.csv     items per code, most used first (DVC plots)
                 reseeded/level_*.csv  dead codes re-seeded after each epoch (DVC plots)
Params  base.seed, rqvae.*
Paths come from the command in ``dvc.yaml``. The SIDs are an artefact of their own
(``data/sids``): the stages downstream read them without knowing which method made them.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("rqvae")  # all params checked, outputs locked: before the slow imports below

import logging

from deepinterestgr.common import io
from deepinterestgr.common.artifacts import RqvaeFiles, SemanticIdFiles, command_line_files
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

FILES = command_line_files("rqvae")  # paths from the command in dvc.yaml

log = logging.getLogger("rqvae")


def main() -> None:
    base, params = load("base"), load("rqvae")
    seed_everything(base.seed)
    embeddings = io.load_array(FILES.embeddings.vectors)
    log.info("read %s embeddings of width %d", f"{len(embeddings):,}", embeddings.shape[1])
    limit = params.max_collision_rate
    check_capacity(len(embeddings), params.codebook_size, params.num_levels, limit)

    trained = train_rqvae(embeddings, params, base.seed)
    assignment = assign_codes(trained.model, embeddings, params.last_level)
    check_collisions(assignment.codes, params.codebook_size, limit)
    codes = add_collision_suffix(assignment.codes)

    with io.new_folder(FILES.rqvae.folder) as folder:  # swapped in whole once written
        io.write_state_dict(RqvaeFiles(folder).model, trained.model.state_dict())
    with io.new_folder(FILES.sids.folder) as folder:
        io.save_array(SemanticIdFiles(folder).codes, codes)

    usages = level_usage(assignment.codes, params.codebook_size)
    diagnostics = sid_diagnostics(assignment.codes, usages)
    io.write_json(
        FILES.metrics,
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
    with io.new_folder(FILES.plots) as plots:
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
    log.info(
        "wrote %s SIDs: %.2f %% collided before the suffix (largest group %d), codes used %s",
        f"{len(codes):,}",
        100 * diagnostics["collision_rate"],
        diagnostics["largest_group"],
        "/".join(str(u.codes_used) for u in usages),
    )


if __name__ == "__main__":
    main()
