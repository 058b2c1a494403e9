"""The ``offline`` mining backend: deep-interest descriptors without any LLM or network.

Items (:func:`mine_items_offline`), a KeyBERT-style ranking of key phrases:

1. **Candidates from the item's own text**: word 2- and 3-grams of the title and description,
   cut at punctuation, numbers, sizes and the brand name (a brand is not an interest), never
   starting or ending with a stopword; plus phrases from the category paths (``"creams &
   moisturizers"``, ``"mascara for eyes"``). Only n-grams used by at least ``min_df`` brands
   are kept: interests recur across a catalogue, shade and product-line names do not (and
   this keeps the encoder's work to a few thousand phrases).
2. **Co-purchase context**: items bought within ``window`` positions of each other in some
   user's *training* history (``UserSequence.train``; validation and test targets are never
   read). The context vector of an item is the co-occurrence-weighted mean embedding of its
   partners; their own candidates, proposed by at least ``min_support`` partners and
   over-represented among them (lift ``>= min_lift``), become ``"paired with <phrase>"``
   candidates.
3. **Score** every candidate phrase p of item i with the bundled sentence encoder (unit
   vectors, one batch of distinct phrases). The item vector ``item_i`` is the mean of its
   own candidates' vectors (no second encoder pass over long item texts: on two CPU cores
   that pass costs several times the phrases' one) or, with ``item_text_chars > 0``, the
   encoding of its text:
   ``s = (1 - context_weight) * cos(p, item_i) + context_weight * cos(p, context_i)``,
   times ``co_purchase_discount`` for ``paired with`` candidates (indirect evidence), which
   are dropped below ``min_paired_score``.
4. **Select** by maximal marginal relevance (Carbonell & Goldstein, 1998):
   ``argmax (1 - diversity) * s - diversity * max cos(p, chosen)``, skipping near-duplicates
   (cosine ``>= duplicate_threshold``, or words contained in its words or the reverse) of
   a chosen phrase.
   Confidence = ``confidence_scale * s`` clipped to [0, 1]; descriptors are sorted by it,
   strongest first.

Users (:func:`mine_users_offline`): each descriptor's confidence-weighted presence across the
user's training items, with recency weights ``0.5 ** (age / half_life)`` (age 0 = latest);
``paired with`` descriptors are not carried over (the history itself shows the pairing).

Every output record is ``offline=True`` and every interest's ``models`` is ``("offline",)``.
The same inputs give the same outputs (sorted candidate lists, one deterministic CPU batch).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from tqdm import tqdm

from deepinterestgr.common import io
from deepinterestgr.common.params import OfflineMinerParams
from deepinterestgr.interests.merge import dedupe_key
from deepinterestgr.items.text_encoder import encode_texts

logger = logging.getLogger(__name__)

OFFLINE_MODEL = "offline"

# Function words and listing noise: a phrase starting or ending with one reads as junk
# ("of the", "spray for"), and "may vary" / "money back" are marketing, not interests.
_STOPWORD_TEXT = """
    a an the and or of for with to in on at by from as is are be this that these it its
    your you our all any no not by per via into de la le du des el y et und mit
    new free best top-rated quality genuine authentic original brand sealed retail package
    packaging may vary money back guarantee guaranteed shipping ship seller item items
    product products lot bulk value pack set kit piece pieces pcs pc count ct size sizes
    oz ml fl ounce ounces fluid lb lbs inch inches gram grams g mg kg l x eau
    assorted style type version edition model
    women men womens mens women's men's ladies girls boys kids unisex children children's
    teen teens"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# A token that ends an n-gram run: anything holding a digit ("0.5-fluid", "e55", "2pc").
_DIGIT = re.compile(r"\d")
_SEGMENT_BREAK = re.compile(r"[,;:()\[\]{}/|+!?\"*#~•]|\s[-–—]\s|\.\s|\.$")
_TOKEN = re.compile(r"[\w'\-]+|\S")
# Category levels that name a body area: a one-word leaf below them reads "mascara for eyes".
_BODY_AREAS = frozenset(("face", "eyes", "lips", "nails", "body", "hands", "feet", "hair", "skin"))
_PAIRED = "paired with "
_MIN_WORDS, _MAX_WORDS = 2, 7


# --------------------------------------------------------------------------- candidates


def _phrase_runs(text: str, brand_tokens: frozenset[str]) -> list[list[str]]:
    """Runs of usable lowercase tokens; numbers, brand words and segment breaks cut runs."""
    runs: list[list[str]] = []
    for segment in _SEGMENT_BREAK.split(text.lower()):
        run: list[str] = []
        for token in _TOKEN.findall(segment):
            token = "and" if token == "&" else token.strip("'-_")
            if not token or not token[0].isalpha() or _DIGIT.search(token) or token in brand_tokens:
                # A number, a size, a symbol or the brand ends the run: n-grams never span it.
                runs.append(run)
                run = []
                continue
            run.append(token)
        runs.append(run)
    return [run for run in runs if len(run) >= _MIN_WORDS]


def text_ngrams(text: str, brand: str | None, ngram_max: int) -> set[str]:
    """Candidate n-grams (2..ngram_max words) of ``text``, lowercase, no stopword at an edge."""
    brand_tokens = frozenset(brand.lower().split()) if brand else frozenset()
    grams = set()
    for run in _phrase_runs(text, brand_tokens):
        for n in range(_MIN_WORDS, ngram_max + 1):
            for start in range(len(run) - n + 1):
                gram = run[start : start + n]
                if gram[0] in STOPWORDS or gram[-1] in STOPWORDS:
                    continue
                grams.add(" ".join(gram))
    return grams


def category_phrases(categories: Sequence[Sequence[str]]) -> set[str]:
    """Phrases from category paths: a multi-word leaf as is, a one-word leaf with its area.

    ``("Beauty", "Makeup", "Eyes", "Mascara")`` gives ``"mascara for eyes"``,
    ``("Beauty", "Hair Care", "Shampoos")`` ``"shampoos for hair"`` (the nearest ancestor
    naming a body area), ``("Beauty", "Skin Care", "Face", "Creams & Moisturizers")``
    ``"creams & moisturizers"``. The root level ("Beauty") is never used on its own, and a
    level made of stopwords only is skipped: ``"women's"`` names a person, not an interest
    (``("Beauty", "Fragrance", "Men's", "Cologne")`` gives ``"fragrance cologne"``).
    """
    phrases = set()
    for path in categories:
        levels = [
            level
            for level in (raw.strip().lower() for raw in path)
            if level and not all(word in STOPWORDS for word in level.split())
        ]
        if len(levels) < 3:
            continue  # a root and one level ("Beauty > Makeup") is too broad to be an interest
        leaf, parent = levels[-1], levels[-2]
        areas = [
            word
            for level in reversed(levels[1:-1])
            for word in dedupe_key(level).split()
            if word in _BODY_AREAS
        ]
        if _word_count(leaf) >= _MIN_WORDS:
            phrases.add(leaf)
        elif leaf in _BODY_AREAS:
            phrases.add(f"{parent} for {leaf}")  # "skin care > face": "skin care for face"
        elif leaf in dedupe_key(parent).split():
            phrases.add(parent)  # "fluids & lotions" > "fluids": the parent says it all
        elif areas:
            phrases.add(f"{leaf} for {areas[0]}")
        else:
            phrases.add(f"{parent} {leaf}")
    return {p for p in phrases if _MIN_WORDS <= _word_count(p) <= _MAX_WORDS}


def _word_count(phrase: str) -> int:
    """Words of a phrase; "&" and commas are not words, an apostrophe does not split one."""
    return len(phrase.replace("&", " ").replace(",", " ").split())


def item_text(item: io.Item, max_chars: int) -> str:
    """The text that represents an item for the encoder: title, brand, category leaves,
    description, cut at ``max_chars`` characters.

    The cut bounds the encoder's cost (quadratic in length within a batch, and a batch is as
    long as its longest text); the title, which says most, comes first.
    """
    parts = [item.title or ""]
    if item.brand:
        parts.append(item.brand)
    parts.extend(path[-1] for path in item.categories if path)
    if item.description:
        parts.append(item.description)
    return ". ".join(part for part in parts if part)[:max_chars]


def own_candidates(items: Sequence[io.Item], settings: OfflineMinerParams) -> list[list[str]]:
    """Per item, its sorted candidate phrases: category phrases and the n-grams that at least
    ``min_df`` brands use.

    Counting brands rather than items drops product-line names ("beblesh balm", "colour
    riche"), which recur within one brand only. An item of unknown brand is counted under
    its title's first word, which is most often the brand ("SKIN79 The Prestige ..."). An
    item left with no candidate keeps all its n-grams.
    """
    grams = [
        text_ngrams(
            f"{item.title or ''}. {(item.description or '')[: settings.description_chars]}",
            item.brand,
            settings.ngram_max,
        )
        for item in items
    ]
    brands: dict[str, set[str]] = defaultdict(set)
    for item, item_grams in zip(items, grams, strict=True):
        title_words = (item.title or "").lower().split()
        brand = (item.brand or "").strip().lower() or (title_words[0] if title_words else "")
        for gram in item_grams:
            brands[gram].add(brand)
    document_frequency = {gram: len(names) for gram, names in brands.items()}
    candidates = []
    for item, item_grams in zip(items, grams, strict=True):
        kept = {g for g in item_grams if document_frequency[g] >= settings.min_df}
        kept |= category_phrases(item.categories)
        # An item with nothing shared keeps its own n-grams rather than go without interests.
        candidates.append(sorted(kept or item_grams))
    return candidates


# --------------------------------------------------------------------------- co-purchases


def co_purchase_matrix(
    users: Sequence[io.UserSequence], num_items: int, window: int
) -> sparse.csr_matrix:
    """Symmetric ``[N, N]`` counts of item pairs bought within ``window`` positions.

    Reads only ``user.train``: the validation and test targets never enter, so mined
    interests carry no information about held-out interactions.
    """
    rows: list[int] = []
    cols: list[int] = []
    for user in users:
        history = user.train
        for position, item in enumerate(history):
            for partner in history[position + 1 : position + 1 + window]:
                if partner != item:
                    rows.extend((item, partner))
                    cols.extend((partner, item))
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sparse.coo_matrix((data, (rows, cols)), shape=(num_items, num_items))
    return matrix.tocsr()  # duplicate pairs are summed into counts


def phrase_centroids(
    candidates: Sequence[Sequence[str]], phrase_vectors: np.ndarray, phrase_index: dict[str, int]
) -> np.ndarray:
    """Item vectors ``[N, d]``: the unit mean of each item's candidate phrase vectors.

    A bag-of-phrases embedding of the item that costs no extra encoder pass (phrases are a
    few tokens, item texts tens); an item without candidates gets a zero row.
    """
    rows = [k for k, phrases in enumerate(candidates) for _ in phrases]
    cols = [phrase_index[p] for phrases in candidates for p in phrases]
    incidence = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(candidates), len(phrase_index)),
    )
    return _unit_rows(np.asarray(incidence @ phrase_vectors, dtype=np.float32))


def _paired_phrases(
    partner_candidates: list[list[str]],
    own: set[str],
    catalogue_count: Counter[str],
    num_items: int,
    settings: OfflineMinerParams,
) -> list[str]:
    """Phrases of co-purchase partners that are over-represented among them (sorted).

    Kept when at least ``min_support`` partners propose the phrase and its lift, the share of
    partners proposing it over the share of catalogue items proposing it, is at least
    ``min_lift``: "conditioners" beside a shampoo, not "nail polish" beside everything
    because nail polish is common.
    """
    support = Counter(phrase for phrases in partner_candidates for phrase in phrases)
    num_partners = max(len(partner_candidates), 1)
    return sorted(
        phrase
        for phrase, count in support.items()
        if count >= settings.min_support
        and phrase not in own
        and (count / num_partners) / (catalogue_count[phrase] / num_items) >= settings.min_lift
    )


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------- selection


def _score(
    own: list[str],
    paired: list[str],
    vectors: np.ndarray,
    item_vector: np.ndarray,
    context_vector: np.ndarray,
    settings: OfflineMinerParams,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Step 3 for one item: ``(phrases, vectors [P, d], scores [P])`` of the kept candidates.

    ``vectors`` holds the unit vectors of ``own + paired`` in that order; ``paired`` phrases
    come back as ``"paired with <phrase>"``.
    """
    weight = settings.context_weight
    scores = (1 - weight) * (vectors @ item_vector) + weight * (vectors @ context_vector)
    scores[len(own) :] *= settings.co_purchase_discount
    keep = np.ones(len(scores), dtype=bool)
    keep[len(own) :] = scores[len(own) :] >= settings.min_paired_score
    phrases = [*own, *(_PAIRED + p for p in paired)]
    return [p for p, kept in zip(phrases, keep, strict=True) if kept], vectors[keep], scores[keep]


def _select(
    phrases: list[str],
    scores: np.ndarray,
    vectors: np.ndarray,
    max_descriptors: int,
    settings: OfflineMinerParams,
) -> list[tuple[str, float]]:
    """Maximal marginal relevance over one item's candidates; returns (phrase, score)."""
    chosen: list[int] = []
    chosen_words: list[frozenset[str]] = []
    available = np.ones(len(phrases), dtype=bool)
    redundancy = np.zeros(len(phrases), dtype=np.float32)
    while len(chosen) < max_descriptors and available.any():
        mmr = (1 - settings.diversity) * scores - settings.diversity * redundancy
        mmr[~available] = -np.inf
        best = int(np.argmax(mmr))  # first maximum: candidates are sorted, so ties are stable
        available[best] = False
        words = frozenset(dedupe_key(phrases[best]).split())
        similarity = vectors @ vectors[best]
        closest = float(np.max(similarity[chosen])) if chosen else -1.0
        # A phrase inside a chosen one ("therapy system" / "light therapy system") adds nothing.
        contained = any(words <= other or other <= words for other in chosen_words)
        if contained or closest >= settings.duplicate_threshold:
            continue
        chosen.append(best)
        chosen_words.append(words)
        redundancy = np.maximum(redundancy, similarity) if len(chosen) > 1 else similarity
    scale = settings.confidence_scale
    picked = [(phrases[i], float(np.clip(scale * scores[i], 0.0, 1.0))) for i in chosen]
    return sorted(picked, key=lambda pair: (-pair[1], pair[0]))


def mine_items_offline(
    items: Sequence[io.Item],
    users: Sequence[io.UserSequence],
    max_descriptors: int,
    encoder: str,
    settings: OfflineMinerParams,
) -> list[io.ItemInterests]:
    """Mine up to ``max_descriptors`` interests per item from text and co-purchases.

    Args:
        items: the catalogue, ``item_id`` 0..N-1 in order.
        users: histories; only ``user.train`` is read (module docstring, step 2).
        max_descriptors: descriptors per item (fewer when an item has fewer candidates).
        encoder: sentence encoder name or path (see :mod:`deepinterestgr.items.text_encoder`).
        settings: the miner's tunables.

    Returns:
        one :class:`~deepinterestgr.common.io.ItemInterests` per item, in item order, ``offline``
        True; descriptors 2-7 lowercase words, confidence in [0, 1], strongest first.
    """
    if any(item.item_id != index for index, item in enumerate(items)):
        raise ValueError("items must have item_id 0..N-1 in order")
    num_items = len(items)
    candidates = own_candidates(items, settings)
    co_counts = co_purchase_matrix(users, num_items, settings.window)

    vocabulary = sorted({phrase for phrases in candidates for phrase in phrases})
    phrase_index = {phrase: k for k, phrase in enumerate(vocabulary)}
    logger.info(
        "offline miner: %s items, %s distinct candidate phrases, item vectors from %s",
        f"{num_items:,}",
        f"{len(vocabulary):,}",
        f"text cut at {settings.item_text_chars} chars" if settings.item_text_chars else "phrases",
    )
    phrase_vectors = encode_texts(
        vocabulary, encoder, batch_size=settings.batch_size, show_progress=len(vocabulary) > 1000
    )
    if settings.item_text_chars:
        item_vectors = encode_texts(
            [item_text(item, settings.item_text_chars) for item in items],
            encoder,
            batch_size=settings.batch_size,
            show_progress=num_items > 1000,
        )
    else:
        item_vectors = phrase_centroids(candidates, phrase_vectors, phrase_index)
    # Items nobody bought with anything use their own vector as context (score = cos to item).
    context = np.asarray(co_counts @ item_vectors)
    has_partners = np.asarray(co_counts.sum(axis=1)).ravel() > 0
    context = np.where(has_partners[:, None], _unit_rows(context), item_vectors)

    catalogue_count = Counter(phrase for phrases in candidates for phrase in phrases)
    rows = []
    for item in tqdm(items, desc="offline mining", unit="item", disable=num_items < 1000):
        i = item.item_id
        own = candidates[i]
        partners = co_counts.indices[co_counts.indptr[i] : co_counts.indptr[i + 1]]
        paired = _paired_phrases(
            [candidates[k] for k in partners], set(own), catalogue_count, num_items, settings
        )
        vectors = phrase_vectors[[phrase_index[p] for p in own + paired]]
        phrases, vectors, scores = _score(
            own, paired, vectors, item_vectors[i], context[i], settings
        )
        picked = _select(phrases, scores, vectors, max_descriptors, settings)
        interests = tuple(
            io.Interest(phrase, round(score, 4), (OFFLINE_MODEL,)) for phrase, score in picked
        )
        rows.append(io.ItemInterests(i, interests, offline=True))
    return rows


# --------------------------------------------------------------------------- users


def mine_users_offline(
    users: Sequence[io.UserSequence],
    item_interests: Sequence[io.ItemInterests],
    max_descriptors: int,
    half_life: float,
) -> list[io.UserInterests]:
    """Aggregate item descriptors over each user's training history, recent items weighing more.

    For a user with training items ``t_0 .. t_{n-1}`` (oldest first), item ``t_j`` weighs
    ``w_j = 0.5 ** ((n - 1 - j) / half_life)``; a descriptor's confidence is
    ``sum_j w_j * c_j / sum_j w_j`` with ``c_j`` its confidence on item ``t_j`` (0 if absent),
    so it lies in [0, 1]. Descriptors are merged by :func:`~deepinterestgr.interests.merge.
    dedupe_key`; the surface text is the spelling with the largest weighted contribution.

    Args:
        users: histories; only ``user.train`` is read.
        item_interests: mined interests, one row per item id that appears in a history.
        max_descriptors: descriptors per user.
        half_life: age, in items, at which a purchase counts half as much as the latest.

    Returns:
        one :class:`~deepinterestgr.common.io.UserInterests` per user, in input order, ``offline``
        True, interests strongest first with ``models == ("offline",)``.
    """
    # (key, spelling, confidence) per item, computed once: a popular item is in many histories.
    # "paired with ..." descriptors are left out: the user's own purchases already say what
    # they buy together.
    by_item = {
        row.item_id: [
            (dedupe_key(x.descriptor), x.descriptor, x.confidence)
            for x in row.interests
            if not x.descriptor.startswith(_PAIRED)
        ]
        for row in item_interests
    }
    rows = []
    for user in tqdm(users, desc="offline user interests", unit="user", disable=len(users) < 1000):
        history = user.train
        total: dict[str, float] = defaultdict(float)
        spelling: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        weight_sum = 0.0
        for position, item_id in enumerate(history):
            if item_id not in by_item:
                raise ValueError(f"user {user.user_id}: item {item_id} has no mined interests")
            weight = 0.5 ** ((len(history) - 1 - position) / half_life)
            weight_sum += weight
            for key, descriptor, confidence in by_item[item_id]:
                total[key] += weight * confidence
                spelling[key][descriptor] += weight * confidence
        ranked = sorted(total.items(), key=lambda pair: (-pair[1], pair[0]))[:max_descriptors]
        interests = tuple(
            io.Interest(
                descriptor=min(spelling[key].items(), key=lambda pair: (-pair[1], pair[0]))[0],
                confidence=round(min(score / weight_sum, 1.0), 4),
                models=(OFFLINE_MODEL,),
            )
            for key, score in ranked
        )
        rows.append(io.UserInterests(user.user_id, interests, offline=True))
    return rows
