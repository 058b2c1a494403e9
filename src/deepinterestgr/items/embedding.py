"""Interest-enhanced item text and its sentence embedding (IEID, METHOD.md ``embed``).

An item's text is its own evidence (title, brand, categories, description, price, each only
where present, from a template) followed by its positively labelled interests in order,
strongest first. ``use_interests=False`` leaves the interests out: the shallow-text baseline.

Embeddings are cached on disk by ``sha256(encoder, normalize, text)``, so a rerun encodes only
texts it has never seen: changing one item's descriptors re-encodes that item alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from deepinterestgr.common.io import Interest, Item, atomic_path
from deepinterestgr.common.params import EmbedParams, TextTemplateParams

log = logging.getLogger(__name__)

# A text encoder: list of texts -> float32 [len(texts), d].
Encoder = Callable[[Sequence[str]], np.ndarray]


# --------------------------------------------------------------------------- item text


_FIELD = re.compile(r"{(\w+)")


def item_fields(item: Item, max_description_chars: int) -> dict[str, object]:
    """The template fields of ``item``; missing ones are ``None``.

    Categories: each path joined by " > ", paths by " | ". The description is cut at a word
    boundary to ``max_description_chars`` so the interests after it survive the encoder's
    token limit (256 word pieces for MiniLM).
    """
    description = (item.description or "").strip() or None
    if description and len(description) > max_description_chars:
        cut = description[:max_description_chars].rsplit(" ", 1)[0]
        description = cut.rstrip(" ,;.") + " …"
    categories = " | ".join(" > ".join(path) for path in item.categories if path) or None
    title = (item.title or "").strip() or None
    brand = (item.brand or "").strip() or None
    return {
        "title": title,
        "brand": brand,
        "categories": categories,
        "description": description,
        "price": item.price,
    }


def evidence_text(item: Item, template: TextTemplateParams) -> str:
    """The item's own evidence as text (no interests); ``""`` if every field is missing.

    ``template.parts`` are ``str.format`` templates over the fields of :func:`item_fields`; a
    part is dropped when a field it names is missing, so "Brand: {brand}" never reads
    "Brand: None".
    """
    fields = item_fields(item, template.max_description_chars)
    parts = []
    for part in template.parts:
        names = _FIELD.findall(part)
        if all(fields.get(name) is not None for name in names):
            parts.append(_without_end(part.format(**fields), template.separator))
    return template.separator.join(parts)


def _without_end(text: str, separator: str) -> str:
    """``text`` without a trailing copy of the separator's mark ("colour." + ". " would read
    "colour.. ")."""
    text, mark = text.rstrip(), separator.strip()
    return text[: -len(mark)].rstrip() if mark and text.endswith(mark) else text


def item_text(
    item: Item,
    interests: Sequence[Interest],
    template: TextTemplateParams,
    interests_template: str,
    interest_separator: str,
    use_interests: bool,
) -> str:
    """Evidence text followed by the *positive* interests, in their stored order.

    ``interests_template`` holds ``{interests}``, e.g. ``"Interests: {interests}"``. An
    interest counts as positive only when the label stage marked it so; with
    ``use_interests`` false, or no positive interest, the text is the evidence alone.
    """
    text = evidence_text(item, template)
    if not use_interests:
        return text
    positives = [i.descriptor for i in interests if i.positive]
    if not positives:
        return text
    tail = interests_template.format(interests=interest_separator.join(positives))
    return template.separator.join(p for p in (text, tail) if p)


# --------------------------------------------------------------------------- cache


# Part of every key: vectors encoded in padded batches (before text_encoder batched by token
# length) differ in their last bits and must not be mixed with the current ones.
ENCODING_SCHEME = "unpadded"


def text_key(encoder_name: str, normalize: bool, text: str) -> str:
    """Content address of one embedding: the encoder, the normalisation, how it was batched
    (:data:`ENCODING_SCHEME`) and the text."""
    payload = f"{encoder_name}\x00{int(normalize)}\x00{ENCODING_SCHEME}\x00{text}".encode()
    return hashlib.sha256(payload).hexdigest()


class EmbeddingCache:
    """A persistent ``key -> float32 vector`` store in a folder of ``.npz`` chunks.

    Each :meth:`flush` writes one new chunk atomically, so a killed run loses at most the
    vectors since the last flush and never corrupts earlier ones. All chunks are read at
    start-up (12k items x 384 floats is 18 MB), so lookups are dictionary hits.
    """

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._vectors: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        if self.folder is not None and self.folder.is_dir():
            for chunk in sorted(self.folder.glob("chunk-*.npz")):
                with np.load(chunk, allow_pickle=False) as data:
                    for key, vector in zip(data["keys"], data["vectors"], strict=True):
                        self._vectors[str(key)] = vector
            log.info("embedding cache %s: %s vectors", self.folder, f"{len(self._vectors):,}")

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, key: str) -> np.ndarray | None:
        return self._vectors.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        self._vectors[key] = vector
        self._pending[key] = vector

    def flush(self) -> None:
        """Write the vectors added since the last flush as one new chunk (no-op in memory)."""
        if self.folder is None or not self._pending:
            self._pending.clear()
            return
        keys = sorted(self._pending)
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        path = self.folder / f"chunk-{name}-{os.getpid()}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle, keys=np.array(keys), vectors=np.stack([self._pending[k] for k in keys])
            )
        self._pending.clear()


# --------------------------------------------------------------------------- encoding


class EmbedResult(NamedTuple):
    vectors: np.ndarray  # float32 [len(texts), d], row k embeds texts[k]
    encoded: int  # distinct texts sent to the encoder
    cached: int  # distinct texts found in the cache


def embed_texts(
    texts: Sequence[str],
    encode: Encoder,
    cache: EmbeddingCache,
    encoder_name: str,
    normalize: bool,
    batch_size: int,
    flush_every: int = 50,
    desc: str = "encode",
) -> EmbedResult:
    """Embed ``texts`` through ``cache``: only distinct texts missing from it are encoded.

    Missing texts go to ``encode`` in chunks of ``flush_every`` batches (sorted by length, so
    the encoder's own batches of equal token length fill up), each chunk written to the cache
    when encoded. ``encode`` must return float32 ``[len(chunk), d]``, each row independent of
    the others (``text_encoder.encode_texts`` is): then a warm cache gives exactly the vectors
    of a cold one. ``normalize`` is only part of the key (the encoder applies it).
    """
    keys = [text_key(encoder_name, normalize, t) for t in texts]
    unique = dict(zip(keys, texts, strict=True))
    missing = [k for k in unique if cache.get(k) is None]
    missing.sort(key=lambda k: (len(unique[k]), k))
    size = batch_size * flush_every
    chunks = [missing[s : s + size] for s in range(0, len(missing), size)]
    for chunk in tqdm(chunks, desc=desc, unit="chunk", disable=not chunks):
        vectors = np.asarray(encode([unique[k] for k in chunk]), dtype=np.float32)
        if vectors.shape[0] != len(chunk):
            raise ValueError(f"encoder returned {vectors.shape[0]} vectors for {len(chunk)} texts")
        for key, vector in zip(chunk, vectors, strict=True):
            cache.put(key, vector)
        cache.flush()
    cache.flush()
    if not keys:
        return EmbedResult(np.zeros((0, 0), dtype=np.float32), 0, 0)
    matrix = np.stack([cache.get(k) for k in keys]).astype(np.float32, copy=False)
    return EmbedResult(matrix, encoded=len(missing), cached=len(unique) - len(missing))


def sentence_encoder(name_or_path: str, normalize: bool, batch_size: int) -> Encoder:
    """The sentence-transformers encoder ``name_or_path`` as an :data:`Encoder` (CPU)."""
    from deepinterestgr.items.text_encoder import encode_texts

    def encode(texts: Sequence[str]) -> np.ndarray:
        return encode_texts(texts, name_or_path, batch_size=batch_size, normalize=normalize)

    return encode


def item_texts(
    items: Sequence[Item],
    interests: Sequence[Sequence[Interest]],
    template: TextTemplateParams,
    interests_template: str,
    interest_separator: str,
    use_interests: bool,
) -> list[str]:
    """:func:`item_text` for every item; ``interests[i]`` belongs to ``items[i]``."""
    if len(items) != len(interests):
        raise ValueError(f"{len(items)} items but {len(interests)} interest lists")
    return [
        item_text(item, rows, template, interests_template, interest_separator, use_interests)
        for item, rows in zip(items, interests, strict=True)
    ]


def embed_catalogue(
    items: Sequence[Item],
    interests: Sequence[Sequence[Interest]],
    params: EmbedParams,
    cache_dir: str | Path,
) -> tuple[list[str], EmbedResult]:
    """The ``embed`` stage's work: every item's text by ``params``, then its vector through the
    cache in ``cache_dir``. Returns the texts (exactly what was embedded) and the vectors."""
    texts = item_texts(
        items,
        interests,
        params.text,
        params.interests_template,
        params.interest_separator,
        params.use_interests,
    )
    encoder = sentence_encoder(params.encoder, params.normalize, params.batch_size)
    result = embed_texts(
        texts,
        encoder,
        EmbeddingCache(cache_dir),
        params.encoder,
        params.normalize,
        params.batch_size,
    )
    return texts, result
