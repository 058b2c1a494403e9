"""The one seeding helper: every stage calls :func:`seed_everything` with ``base.seed``."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator seeded with ``seed``.

    With ``deterministic`` torch is asked for deterministic kernels, so the same params give
    the same metrics on CPU (``warn_only`` because a few CUDA kernels have no deterministic
    variant; on CPU every kernel used here has one).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
