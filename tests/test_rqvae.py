"""The RQ-VAE trains every parameter, initialises and re-seeds codes, and is deterministic."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deepinterestgr.common import io
from deepinterestgr.common.params import RqvaeParams
from deepinterestgr.items.rqvae import (
    RqVae,
    assign_codes,
    init_codebooks,
    kmeans,
    make_optimizer,
    reseed_dead_codes,
    train_rqvae,
    training_step,
)
from deepinterestgr.items.semantic_ids import add_collision_suffix, collision_stats, format_sid

PARAMS = RqvaeParams(
    input_scaling="l2",
    hidden_dims=(32, 16),
    latent_dim=8,
    num_levels=3,
    codebook_size=8,
    commitment_weight=0.25,
    epochs=15,
    batch_size=32,
    learning_rate=1e-3,
    weight_decay=1e-4,
    kmeans_init="all",
    kmeans_iterations=10,
    dead_code_threshold=1,
    reseed_every=1,
    last_level="balanced",
    max_collision_rate=0.5,
)


def clustered_embeddings(n: int = 120, dim: int = 24, clusters: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(clusters, dim))
    return (centres[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(
        np.float32
    )


def test_forward_shapes():
    model = RqVae(24, (32, 16), 8, num_levels=3, codebook_size=8)
    out = model(torch.randn(5, 24))
    assert out.reconstruction.shape == (5, 24)
    assert out.latent.shape == out.quantized.shape == (5, 8)
    assert out.codes.shape == (5, 3) and out.codes.dtype == torch.int64
    assert out.residuals.shape == (5, 3, 8)
    assert torch.equal(out.residuals[:, 0], out.latent)


def test_a_training_step_moves_every_parameter():
    torch.manual_seed(0)
    model = RqVae(24, (32, 16), 8, num_levels=3, codebook_size=4, input_scaling="l2")
    x = model.scale(torch.from_numpy(clustered_embeddings(64)))
    init_codebooks(model, x, iterations=5, generator=torch.Generator().manual_seed(0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = make_optimizer(model, learning_rate=1e-2, weight_decay=0.0)
    losses, codes = training_step(model, optimizer, x, commitment_weight=0.25)
    assert torch.isfinite(losses.total)
    for name, param in model.named_parameters():
        if name == "codebooks":
            # Every code chosen by some item moved; unchosen codes have no gradient.
            for level in range(model.num_levels):
                for code in codes[:, level].unique():
                    assert not torch.equal(param[level, code], before[name][level, code]), (
                        f"code {code.item()} of level {level} did not move"
                    )
        else:
            assert not torch.equal(param, before[name]), f"{name} did not move"


def test_kmeans_finds_separated_clusters():
    points = torch.tensor([[0.0, 0.0], [0.0, 0.2], [10.0, 10.0], [10.0, 10.2]])
    centroids = kmeans(points, 2, iterations=10, generator=torch.Generator().manual_seed(0))
    found = sorted(centroids.tolist())
    assert found == [pytest.approx([0.0, 0.1]), pytest.approx([10.0, 10.1])]


def test_kmeans_with_fewer_points_than_codes_gives_distinct_finite_codes():
    points = torch.randn(3, 4)
    centroids = kmeans(points, 8, iterations=10, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (8, 4)
    assert torch.isfinite(centroids).all()
    assert torch.equal(centroids[:3], points)
    assert len(torch.unique(centroids, dim=0)) == 8
    single = kmeans(points[:1], 4, iterations=10, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(single).all()


def test_dead_codes_are_reseeded_onto_batch_residuals():
    torch.manual_seed(0)
    model = RqVae(6, (8,), 4, num_levels=2, codebook_size=3)
    x = torch.randn(10, 6)
    usage = torch.tensor([[5, 0, 5], [5, 5, 5]])
    moved = reseed_dead_codes(model, x, usage, threshold=1, generator=torch.Generator())
    assert moved == (1, 0)
    with torch.no_grad():
        latents = model.encoder(x)
    # Level a's dead code now sits exactly on one item's latent (its level-a residual).
    assert (latents == model.codebooks[0, 1]).all(1).any()


def test_same_seed_same_sids_and_suffix_makes_them_unique():
    embeddings = clustered_embeddings()
    first = train_rqvae(embeddings, PARAMS, seed=3)
    second = train_rqvae(embeddings, PARAMS, seed=3)
    codes = assign_codes(first.model, embeddings, PARAMS.last_level).codes
    again = assign_codes(second.model, embeddings, PARAMS.last_level).codes
    assert np.array_equal(codes, again)
    assert [log.total for log in first.history] == [log.total for log in second.history]
    assert len(first.history) == PARAMS.epochs
    sids = [format_sid(row) for row in add_collision_suffix(codes).tolist()]
    assert len(set(sids)) == len(sids)
    assert codes.min() >= 0 and codes.max() < PARAMS.codebook_size


def test_training_lowers_the_loss_and_uses_many_codes():
    embeddings = clustered_embeddings()
    result = train_rqvae(embeddings, dataclasses.replace(PARAMS, epochs=40), seed=0)
    assert result.history[-1].total < result.history[0].total
    assignment = assign_codes(result.model, embeddings, "nearest")
    assert len(np.unique(assignment.codes[:, 0])) >= PARAMS.codebook_size // 2
    assert 0.0 < assignment.reconstruction_relative < 1.0


def test_balanced_last_level_never_collides_more_than_nearest():
    embeddings = clustered_embeddings()
    params = dataclasses.replace(PARAMS, codebook_size=4)  # 64 tuples for 120 items: collisions
    model = train_rqvae(embeddings, params, seed=0).model
    nearest = assign_codes(model, embeddings, "nearest")
    balanced = assign_codes(model, embeddings, "balanced")
    assert np.array_equal(balanced.nearest_codes, nearest.codes)
    assert np.array_equal(balanced.codes[:, :-1], nearest.codes[:, :-1])  # only level c changes
    assert (
        collision_stats(balanced.codes).collision_rate
        < collision_stats(nearest.codes).collision_rate
    )


def test_first_batch_init_runs_on_a_catalogue_smaller_than_the_codebook():
    embeddings = clustered_embeddings(n=5)
    params = dataclasses.replace(PARAMS, kmeans_init="first_batch", batch_size=4, epochs=3)
    result = train_rqvae(embeddings, params, seed=0)
    codes = assign_codes(result.model, embeddings, "balanced").codes
    assert codes.shape == (5, 3)
    assert torch.isfinite(result.model.codebooks).all()


def test_a_saved_model_reloads_and_gives_the_same_codes(tmp_path):
    embeddings = clustered_embeddings()
    params = dataclasses.replace(PARAMS, input_scaling="standardize", epochs=3)
    model = train_rqvae(embeddings, params, seed=0).model
    io.write_state_dict(tmp_path / "model.pt", model.state_dict())
    reloaded = RqVae.from_params(embeddings.shape[1], params)
    reloaded.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert torch.equal(reloaded.input_mean, model.input_mean)  # scaling travels with the model
    expected = assign_codes(model, embeddings, "balanced").codes
    assert np.array_equal(assign_codes(reloaded, embeddings, "balanced").codes, expected)
