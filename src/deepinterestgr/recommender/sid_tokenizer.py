"""The generative recommender's tokenizer: Semantic-ID tokens, task tokens (of
:mod:`deepinterestgr.recommender.prompt`) and interest words.

Every SID level has its own tokens (``<a_0>..<a_255>``, ``<b_0>..``, ...; the last level is the
collision suffix), so an item's SID of ``L+1`` codes is exactly ``L+1`` tokens and the prefix
tree of :mod:`deepinterestgr.recommender.constrained_decoding` works on token ids directly.

Two ways to get one, both returning :class:`SidTokenizer` (a ``PreTrainedTokenizerFast``):

* :func:`build_tokenizer` - a word-level vocabulary for a model trained from scratch: special
  tokens, task tokens, SID tokens, then the most frequent words of the training interest text.
* :func:`extend_pretrained_tokenizer` - a pretrained checkpoint's tokenizer with the SID and
  task tokens added as atomic tokens (the checkpoint's embeddings are then resized).

Saved with ``save_pretrained`` and loaded with :func:`load_tokenizer`, which names the class
explicitly: ``AutoTokenizer`` may pick a model-specific class that re-splits added tokens
(METHOD.md, pitfalls).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import AddedToken, PreTrainedTokenizerFast

from deepinterestgr.items.semantic_ids import token as sid_token
from deepinterestgr.recommender.prompt import TASK_TOKENS

PAD, EOS, UNK, SEP = "<pad>", "<eos>", "<unk>", "<sep>"
# Words and punctuation of interest text; SID and special tokens are matched whole first.
_WORD_PATTERN = r"<[^<>\s]+>|\w+|[^\w\s]"


class SidTokenizer(PreTrainedTokenizerFast):
    """A fast tokenizer whose class is always named when loading (see :func:`load_tokenizer`)."""


def sid_tokens(level_sizes: Sequence[int]) -> list[str]:
    """All SID tokens, level by level: ``level_sizes[l]`` codes at level ``l``."""
    return [
        sid_token(level, code) for level, size in enumerate(level_sizes) for code in range(size)
    ]


def level_sizes_of(codes: np.ndarray) -> list[int]:
    """Codes per level needed to cover ``codes`` int ``[N, L+1]`` (max code + 1 per column)."""
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.min() < 0:
        raise ValueError(
            f"codes must be a non-empty non-negative [N, L+1] array, got {codes.shape}"
        )
    return [int(size) for size in codes.max(axis=0) + 1]


def build_tokenizer(
    level_sizes: Sequence[int], texts: Iterable[str], max_words: int, min_count: int
) -> SidTokenizer:
    """A word-level tokenizer for a model trained from scratch.

    Vocabulary order: ``<pad> <eos> <unk> <sep>``, the task tokens, the SID tokens of every
    level, then up to ``max_words`` lower-cased words/punctuation seen at least ``min_count``
    times in ``texts`` (most frequent first, ties alphabetical, so the result is deterministic).
    """
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        counts.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    fixed = [PAD, EOS, UNK, SEP, *TASK_TOKENS.values(), *sid_tokens(level_sizes)]
    words = [w for w in words if w not in set(fixed)][:max_words]
    vocab = {token: index for index, token in enumerate([*fixed, *words])}

    backend = Tokenizer(WordLevel(vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    # Whitespace first, then whole tokens: "<a_1><b_2>" -> "<a_1>", "<b_2>", never "<", "a_1".
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_WORD_PATTERN), "isolated")]
    )
    tokenizer = SidTokenizer(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK, sep_token=SEP
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(TASK_TOKENS.values())})
    return tokenizer


def extend_pretrained_tokenizer(path: str | Path, level_sizes: Sequence[int]) -> SidTokenizer:
    """A pretrained checkpoint's tokenizer with SID, task and separator tokens added whole.

    SID tokens are added un-normalised and atomic, so ``"<a_12><b_7>"`` is always two tokens.
    A checkpoint without a padding token pads with its end-of-sequence token.
    """
    tokenizer = SidTokenizer.from_pretrained(str(path))
    tokenizer.add_special_tokens(
        {"sep_token": SEP, "additional_special_tokens": list(TASK_TOKENS.values())}
    )
    if tokenizer.eos_token is None:
        tokenizer.add_special_tokens({"eos_token": EOS})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.add_tokens(
        [AddedToken(t, normalized=False, single_word=False) for t in sid_tokens(level_sizes)]
    )
    return tokenizer


def load_tokenizer(path: str | Path) -> SidTokenizer:
    """Load a tokenizer saved by ``save_pretrained``, always as :class:`SidTokenizer`."""
    return SidTokenizer.from_pretrained(str(path))


def sid_token_ids(tokenizer: PreTrainedTokenizerFast, codes: np.ndarray) -> np.ndarray:
    """Token ids of every item's SID: int64 ``[N, L+1]`` from codes int ``[N, L+1]``.

    Fails naming the first code that has no token (the tokenizer was built for fewer codes).
    """
    num_levels = codes.shape[1]
    tables = []
    for level in range(num_levels):
        size = int(codes[:, level].max()) + 1
        ids = tokenizer.convert_tokens_to_ids([sid_token(level, c) for c in range(size)])
        missing = [c for c, i in enumerate(ids) if i is None or i == tokenizer.unk_token_id]
        if missing:
            raise ValueError(f"tokenizer has no token {sid_token(level, missing[0])}")
        tables.append(np.asarray(ids, dtype=np.int64))
    return np.stack([tables[level][codes[:, level]] for level in range(num_levels)], axis=1)
