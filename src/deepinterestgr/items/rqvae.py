"""Residual-quantized VAE (RQ-VAE) that turns item embeddings into L discrete codes.

IEID's discretization (METHOD.md, ``rqvae``; TIGER, Rajput et al. 2023, section 3.1): an MLP
encoder maps an embedding to a latent ``z``; L codebooks quantize it residually
(level l picks the code nearest to what levels 1..l-1 left over); an MLP decoder reconstructs
the embedding from the sum of the chosen codes.

Shapes: B items in a batch, ``d`` embedding width, D latent width, L levels, K codes per level.

Collapse onto a few codes is the known failure (MiniOneRec's released IDs use 48-88 of 256
first-level codes), so codebooks start from k-means of the latents and codes left unused
during an epoch are re-seeded from residuals of a batch. The last level can optionally be
assigned by a balanced (one-to-one) matching inside each group of items sharing the first
L-1 codes, which removes most collisions before any suffix is needed.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from tqdm import tqdm

from deepinterestgr.common.params import RqvaeParams

logger = logging.getLogger(__name__)

InputScaling = Literal["none", "l2", "standardize"]
LastLevel = Literal["nearest", "balanced"]


class RqVaeOutput(NamedTuple):
    """What :meth:`RqVae.forward` returns for a batch of B (scaled) embeddings."""

    reconstruction: Tensor  # [B, d] decoder output
    latent: Tensor  # [B, D] encoder output z
    quantized: Tensor  # [B, D] sum of the chosen code vectors (no straight-through)
    codes: Tensor  # [B, L] int64 in [0, K)
    residuals: Tensor  # [B, L, D] residual entering each level (residuals[:, 0] = z)


class RqVaeLoss(NamedTuple):
    """Scalar losses of one batch; ``total = reconstruction + codebook + beta * commitment``.

    ``codebook`` and ``commitment`` have the same value; they differ in which side the
    gradient reaches (VQ-VAE, van den Oord et al. 2017, eq. 3).
    """

    total: Tensor
    reconstruction: Tensor  # squared error per item, summed over the d dimensions
    codebook: Tensor  # sum over levels of ||sg(r_l) - e_l||^2 (moves the codes)
    commitment: Tensor  # sum over levels of ||r_l - sg(e_l)||^2 (moves the encoder)


class EpochLog(NamedTuple):
    """Mean losses of one epoch and how many codes were re-seeded after it (per level)."""

    epoch: int
    total: float
    reconstruction: float
    codebook: float
    commitment: float
    reseeded: tuple[int, ...]


class RqVae(nn.Module):
    """MLP encoder -> L residual codebooks of K codes -> MLP decoder.

    Inputs are embeddings already scaled with :meth:`scale` (buffers ``input_mean`` and
    ``input_std`` travel with the state dict, so a saved model scales new items the same way).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        latent_dim: int,
        num_levels: int,
        codebook_size: int,
        input_scaling: InputScaling = "none",
    ) -> None:
        super().__init__()
        if num_levels < 1 or codebook_size < 1:
            raise ValueError(
                f"need num_levels >= 1 and codebook_size >= 1, got {num_levels}, {codebook_size}"
            )
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.input_scaling = input_scaling
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), input_dim])
        # One tensor for all levels [L, K, D]; filled by k-means before training.
        self.codebooks = nn.Parameter(torch.randn(num_levels, codebook_size, latent_dim) * 0.01)
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_std", torch.ones(input_dim))

    @classmethod
    def from_params(cls, input_dim: int, params: RqvaeParams) -> RqVae:
        return cls(
            input_dim,
            params.hidden_dims,
            params.latent_dim,
            params.num_levels,
            params.codebook_size,
            params.input_scaling,
        )

    def fit_scaling(self, embeddings: Tensor) -> None:
        """Set the scaling buffers from all embeddings ``[N, d]`` (only for ``standardize``)."""
        if self.input_scaling == "standardize":
            self.input_mean.copy_(embeddings.mean(0))
            # Floor the std so constant dimensions do not blow up.
            self.input_std.copy_(embeddings.std(0).clamp_min(1e-6))

    def scale(self, embeddings: Tensor) -> Tensor:
        """Raw embeddings ``[B, d]`` -> the space the model reconstructs."""
        if self.input_scaling == "l2":
            return nn.functional.normalize(embeddings, dim=1)
        if self.input_scaling == "standardize":
            return (embeddings - self.input_mean) / self.input_std
        return embeddings

    def quantize(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Residual quantization of ``latent [B, D]`` by nearest codes.

        Returns ``(quantized [B, D], codes [B, L], residuals [B, L, D])``.
        """
        residual = latent
        quantized = torch.zeros_like(latent)
        codes, residuals = [], []
        for level in range(self.num_levels):
            residuals.append(residual)
            code = _nearest(residual.detach(), self.codebooks[level].detach())
            chosen = self.codebooks[level][code]
            codes.append(code)
            quantized = quantized + chosen
            # The next level sees what this one missed; detached so that level l's commitment
            # term alone decides how the encoder moves towards code l.
            residual = residual - chosen.detach()
        return quantized, torch.stack(codes, 1), torch.stack(residuals, 1)

    def forward(self, x: Tensor) -> RqVaeOutput:
        latent = self.encoder(x)
        quantized, codes, residuals = self.quantize(latent)
        # Straight-through estimator: the decoder's gradient reaches the encoder unchanged.
        decoded = self.decoder(latent + (quantized - latent).detach())
        return RqVaeOutput(decoded, latent, quantized, codes, residuals)

    def loss(self, x: Tensor, out: RqVaeOutput, commitment_weight: float) -> RqVaeLoss:
        # Summed over dimensions like the quantization terms: a per-element mean would let them
        # outweigh reconstruction by a factor d and collapse the latent onto one code.
        reconstruction = ((out.reconstruction - x) ** 2).sum(-1).mean()
        chosen = self.codebooks[torch.arange(self.num_levels), out.codes]  # [B, L, D]
        codebook = ((out.residuals.detach() - chosen) ** 2).sum(-1).mean(0).sum()
        commitment = ((out.residuals - chosen.detach()) ** 2).sum(-1).mean(0).sum()
        total = reconstruction + codebook + commitment_weight * commitment
        return RqVaeLoss(total, reconstruction, codebook, commitment)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Reconstruct (scaled) embeddings ``[B, d]`` from codes ``[B, L]``."""
        chosen = self.codebooks[torch.arange(self.num_levels), codes]  # [B, L, D]
        return self.decoder(chosen.sum(1))


class TrainResult(NamedTuple):
    model: RqVae
    history: list[EpochLog]  # one entry per epoch
    seconds: float  # wall time of initialisation and training
    cpu_seconds: float  # CPU time of this process over the same span (all threads)


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def _squared_distances(points: Tensor, centroids: Tensor) -> Tensor:
    """``[n, D] x [k, D] -> [n, k]`` squared Euclidean distances."""
    return (
        (points**2).sum(1, keepdim=True) - 2 * points @ centroids.T + (centroids**2).sum(1)[None, :]
    ).clamp_min(0)


def _nearest(points: Tensor, centroids: Tensor) -> Tensor:
    return _squared_distances(points, centroids).argmin(1)


def kmeans(points: Tensor, k: int, iterations: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding then Lloyd iterations; returns centroids ``[k, D]``.

    With fewer points than codes (small catalogues) every point becomes a centroid and the
    rest are points plus small noise, so no code starts as an exact duplicate; re-seeding
    later moves whichever stay unused. Empty clusters take the worst-served points.
    """
    points = points.detach()
    n = points.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    if n <= k:
        extra = torch.randint(n, (k - n,), generator=generator)
        noise = torch.randn(k - n, points.shape[1], generator=generator)
        spread = points.std(0, unbiased=False).clamp_min(1e-3) if n > 1 else 1.0
        return torch.cat([points, points[extra] + 0.01 * spread * noise])
    centroids = points[torch.randint(n, (1,), generator=generator)]
    closest = _squared_distances(points, centroids)[:, 0]
    for _ in range(1, k):
        # k-means++: the next seed is drawn proportionally to its squared distance.
        weights = closest if closest.sum() > 0 else torch.ones(n)
        pick = torch.multinomial(weights, 1, generator=generator)
        centroids = torch.cat([centroids, points[pick]])
        closest = torch.minimum(closest, _squared_distances(points, points[pick])[:, 0])
    for _ in range(iterations):
        distances = _squared_distances(points, centroids)
        assign = distances.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        updated = sums / counts.clamp_min(1)[:, None]
        empty = (counts == 0).nonzero()[:, 0]
        if len(empty):
            worst = distances.gather(1, assign[:, None])[:, 0].argsort(descending=True)
            updated[empty] = points[worst[: len(empty)]]
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids


@torch.no_grad()
def init_codebooks(model: RqVae, x: Tensor, iterations: int, generator: torch.Generator) -> None:
    """Level by level: k-means of the residuals left by the already-initialised levels."""
    residual = model.encoder(x)
    for level in range(model.num_levels):
        model.codebooks[level] = kmeans(residual, model.codebook_size, iterations, generator)
        residual = residual - model.codebooks[level][_nearest(residual, model.codebooks[level])]


@torch.no_grad()
def reseed_dead_codes(
    model: RqVae, x: Tensor, usage: Tensor, threshold: int, generator: torch.Generator
) -> tuple[int, ...]:
    """Move codes chosen fewer than ``threshold`` times (``usage [L, K]``) onto residuals of ``x``.

    Levels are processed in order so that level l draws from residuals under the already
    re-seeded levels 1..l-1. Returns the number of codes moved per level.
    """
    residual = model.encoder(x)
    moved = []
    for level in range(model.num_levels):
        dead = (usage[level] < threshold).nonzero()[:, 0]
        if len(dead):
            pick = torch.randperm(residual.shape[0], generator=generator)[: len(dead)]
            if len(pick) < len(dead):  # batch smaller than the dead set: draw with replacement
                pick = torch.randint(residual.shape[0], (len(dead),), generator=generator)
            model.codebooks[level, dead] = residual[pick]
        moved.append(len(dead))
        residual = residual - model.codebooks[level][_nearest(residual, model.codebooks[level])]
    return tuple(moved)


def training_step(
    model: RqVae, optimizer: torch.optim.Optimizer, x: Tensor, commitment_weight: float
) -> tuple[RqVaeLoss, Tensor]:
    """One gradient step on a batch ``x [B, d]``; returns the losses and the codes ``[B, L]``."""
    model.train()
    out = model(x)
    losses = model.loss(x, out, commitment_weight)
    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    optimizer.step()
    return losses, out.codes


def make_optimizer(model: RqVae, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; weight decay would pull codes towards the origin, so codebooks are exempt."""
    networks = [p for name, p in model.named_parameters() if name != "codebooks"]
    return torch.optim.AdamW(
        [
            {"params": networks, "weight_decay": weight_decay},
            {"params": [model.codebooks], "weight_decay": 0.0},
        ],
        lr=learning_rate,
    )


def train_rqvae(embeddings: np.ndarray, params: RqvaeParams, seed: int) -> TrainResult:
    """Build the model, fit scaling, initialise codebooks by k-means, train with re-seeding.

    ``embeddings``: float32 ``[N, d]``. Deterministic on CPU for a given ``seed``: weights are
    initialised under it and all later randomness comes from one generator seeded with it.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RqVae.from_params(embeddings.shape[1], params)
    generator = torch.Generator().manual_seed(seed)
    raw = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    model.fit_scaling(raw)
    x = model.scale(raw)
    n = x.shape[0]
    batch_size = min(params.batch_size, n)
    order = torch.randperm(n, generator=generator)
    init_points = x if params.kmeans_init == "all" else x[order[:batch_size]]
    init_codebooks(model, init_points, params.kmeans_iterations, generator)
    optimizer = make_optimizer(model, params.learning_rate, params.weight_decay)
    history: list[EpochLog] = []
    for epoch in tqdm(range(params.epochs), desc="rqvae", unit="epoch", mininterval=5):
        order = torch.randperm(n, generator=generator)
        usage = torch.zeros(model.num_levels, model.codebook_size, dtype=torch.long)
        sums = torch.zeros(4)
        for begin in range(0, n, batch_size):
            batch = x[order[begin : begin + batch_size]]
            losses, codes = training_step(model, optimizer, batch, params.commitment_weight)
            sums += torch.stack([t.detach() for t in losses]) * len(batch)
            for level in range(model.num_levels):
                usage[level] += torch.bincount(codes[:, level], minlength=model.codebook_size)
        reseeded: tuple[int, ...] = (0,) * model.num_levels
        last = epoch == params.epochs - 1
        if params.reseed_every > 0 and (epoch + 1) % params.reseed_every == 0 and not last:
            # "Current batch": a random batch of the epoch's order, never the short remainder.
            reseeded = reseed_dead_codes(
                model, x[order[:batch_size]], usage, params.dead_code_threshold, generator
            )
        means = (sums / n).tolist()
        history.append(EpochLog(epoch, *means, reseeded))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    final = history[-1]
    logger.info(
        "trained %d epochs in %.1f s (%.1f s CPU): loss %.4f (reconstruction %.4f, commit %.4f)",
        params.epochs,
        seconds,
        cpu_seconds,
        final.total,
        final.reconstruction,
        final.commitment,
    )
    return TrainResult(model, history, seconds, cpu_seconds)


class Assignment(NamedTuple):
    """Final codes of every item, before any collision suffix."""

    codes: np.ndarray  # int64 [N, L]
    nearest_codes: np.ndarray  # int64 [N, L]: plain nearest-code assignment, for diagnostics
    reconstruction_mse: float  # mean squared error per element, in the scaled space, of codes
    reconstruction_relative: float  # sum of squared errors / total variance of scaled inputs


@torch.no_grad()
def assign_codes(model: RqVae, embeddings: np.ndarray, last_level: LastLevel) -> Assignment:
    """Codes for all items ``[N, d]``; reconstruction error is measured from those codes.

    ``balanced``: inside each group of items that share the first L-1 codes and collide at the
    last level, the last codes are re-assigned one-to-one by minimum total squared distance
    (Hungarian matching), so such a group of up to K items gets distinct codes at the least
    cost in reconstruction (cf. LC-Rec's uniform semantic mapping of the last level).
    """
    model.eval()
    x = model.scale(torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)))
    out = model(x)
    nearest = out.codes.numpy().astype(np.int64)
    codes = nearest.copy()
    if last_level == "balanced":
        last_residual = out.residuals[:, -1]
        last_book = model.codebooks[-1]
        _, group_of = np.unique(nearest[:, :-1], axis=0, return_inverse=True)
        group_of = group_of.reshape(-1)
        for group in np.unique(group_of):
            members = np.flatnonzero(group_of == group)
            collide = len(np.unique(nearest[members, -1])) < len(members)
            if not collide or len(members) > model.codebook_size:
                continue  # no collision, or too many items for distinct codes: suffix decides
            cost = _squared_distances(last_residual[members], last_book).numpy()
            rows, cols = linear_sum_assignment(cost)
            codes[members[rows], -1] = cols
    reconstruction = model.decode_codes(torch.from_numpy(codes))
    squared = ((reconstruction - x) ** 2).sum().item()
    variance = ((x - x.mean(0)) ** 2).sum().item()
    return Assignment(
        codes=codes,
        nearest_codes=nearest,
        reconstruction_mse=squared / x.numel(),
        reconstruction_relative=squared / max(variance, 1e-12),
    )
