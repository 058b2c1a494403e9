"""The raw Amazon review sources: ``amazon2014`` and ``amazon2023``.

============  ============================================  =====================================
source        reviews (one JSON object per line)            metadata (one record per line)
============  ============================================  =====================================
amazon2014    ``reviews_<Category>_5.json.gz``: reviewerID,  ``meta_<Category>.json.gz``: Python
              asin, unixReviewTime (s)                       literal dicts (``ast.literal_eval``)
amazon2023    ``<Category>.jsonl.gz``: user_id,              ``meta_<Category>.jsonl.gz``: JSON,
              parent_asin, timestamp (ms)                    keyed by parent_asin
============  ============================================  =====================================

Category names are the file names' (2014: ``Beauty``, ``Sports_and_Outdoors``; 2023:
``All_Beauty``, ``Beauty_and_Personal_Care``). Files come from ``local_dir`` or are downloaded
once from the public URLs below into ``raw_dir``.

Processing, in order:

1. Reviews are read in file order; a line that is not JSON or lacks a field is a counted skip
   (``malformed_review``). A truncated or corrupt gzip file is an error.
2. Metadata is parsed only for items some review mentions (``literal_eval`` of a quarter of a
   million lines would dominate the run). A bad needed line is a counted skip
   (``malformed_meta``); a reviewed item without metadata drops its reviews
   (``missing_metadata``). Each reason fails the stage above ``download.max_skip_rate``.
3. Each user's reviews are sorted by time, stably (ties keep file order); a repeated
   user-item pair keeps its first review (``filtered.duplicate_interactions``).
4. Iterative k-core: users and items keep at least ``kcore`` interactions; users also keep at
   least 3, since leave-one-out needs a training item, a validation and a test target.
5. Users are numbered by first appearance in the reviews file, items by first appearance
   walking the users' sequences.
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import math
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from deepinterestgr.common.io import Item
from deepinterestgr.data_sources.dataset import (
    MIN_SEQUENCE_LENGTH,
    Dataset,
    SkipLog,
    SourceError,
    build_dataset,
)
from deepinterestgr.data_sources.fetch import download
from deepinterestgr.data_sources.kcore import kcore

log = logging.getLogger(__name__)

URL_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
URL_2023 = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw/"


class Layout(NamedTuple):
    """File names and fields of one release."""

    reviews_name: str  # format string with {category}
    meta_name: str
    reviews_url: str  # folder URL
    meta_url: str
    user_field: str
    item_field: str
    time_field: str
    meta_item_field: str
    parse_meta: Callable[[str], Any]


LAYOUTS = {
    "amazon2014": Layout(
        "reviews_{category}_5.json.gz",
        "meta_{category}.json.gz",
        URL_2014,
        URL_2014,
        "reviewerID",
        "asin",
        "unixReviewTime",
        "asin",
        ast.literal_eval,  # the 2014 metadata is Python literals, not JSON; never eval()
    ),
    "amazon2023": Layout(
        "{category}.jsonl.gz",
        "meta_{category}.jsonl.gz",
        URL_2023 + "review_categories/",
        URL_2023 + "meta_categories/",
        "user_id",
        "parent_asin",
        "timestamp",
        "parent_asin",
        json.loads,
    ),
}


class RawFiles(NamedTuple):
    reviews: Path
    meta: Path
    local: bool = False  # from download.local_dir (not downloaded by us: never delete them)


def locate(source: str, category: str, local_dir: Path | None, raw_dir: Path) -> RawFiles:
    """Paths of the two raw files: in ``local_dir`` if given, else downloaded to ``raw_dir``."""
    layout = LAYOUTS[source]
    names = (
        layout.reviews_name.format(category=category),
        layout.meta_name.format(category=category),
    )
    if local_dir is not None:
        paths = RawFiles(*(local_dir / name for name in names), local=True)
        for path in paths[:2]:
            if not path.is_file():
                raise SourceError(f"{path}: no such file (download.local_dir={local_dir})")
        return paths
    urls = layout.reviews_url + names[0], layout.meta_url + names[1]
    return RawFiles(
        *(download(url, raw_dir / source / name) for url, name in zip(urls, names, strict=True))
    )


def load(source: str, files: RawFiles, min_count: int, skips: SkipLog) -> Dataset:
    """Load a raw release into a :class:`Dataset` (steps 1-5 of the module docstring)."""
    layout = LAYOUTS[source]
    reviews = _read_reviews(files.reviews, layout, skips, files.local)
    skips.check("malformed_review", reviews.lines)
    metadata, parsed = _read_meta(files.meta, layout, set(reviews.items), skips, files.local)
    skips.check("malformed_meta", parsed)

    per_user: dict[str, list[tuple[int, str]]] = {}
    for k, (user, item, time) in enumerate(
        zip(reviews.users, reviews.items, reviews.times, strict=True)
    ):
        if item not in metadata:
            where = f"{files.reviews}:{reviews.line_of[k]}: field '{layout.item_field}'"
            skips.skip("missing_metadata", f"{where}: '{item}' has no line in {files.meta.name}")
            continue
        per_user.setdefault(user, []).append((time, item))
    skips.check("missing_metadata", len(reviews.items))

    users, items, duplicates = [], [], 0
    for user, events in per_user.items():
        events.sort(key=lambda event: event[0])  # list.sort is stable: ties keep file order
        seen: set[str] = set()
        for _, item in events:
            if item in seen:
                duplicates += 1
                continue
            seen.add(item)
            users.append(user)
            items.append(item)

    user_codes = {u: k for k, u in enumerate(per_user)}
    item_codes: dict[str, int] = {}
    core = kcore(
        np.array([user_codes[u] for u in users], dtype=np.int64),
        np.array([item_codes.setdefault(i, len(item_codes)) for i in items], dtype=np.int64),
        min_user=max(min_count, MIN_SEQUENCE_LENGTH),
        min_item=min_count,
    )
    log.info(
        "k-core (users >= %d, items >= %d): %d rounds removed %s users, %s items, %s interactions",
        max(min_count, MIN_SEQUENCE_LENGTH),
        min_count,
        core.rounds,
        f"{core.removed_users:,}",
        f"{core.removed_items:,}",
        f"{core.removed_interactions:,}",
    )
    sequences: dict[str, list[str]] = {}
    for user, item, keep in zip(users, items, core.keep, strict=True):
        if keep:
            sequences.setdefault(user, []).append(item)
    if not sequences:
        raise SourceError(
            f"{files.reviews}: no user is left ({len(per_user):,} users with metadata before the "
            f"{max(min_count, MIN_SEQUENCE_LENGTH)}-core filter); check the file and download.kcore"
        )
    return build_dataset(
        source,
        list(sequences.items()),
        metadata,
        skipped=skips.counts,
        filtered={
            "duplicate_interactions": duplicates,
            "kcore_users": core.removed_users,
            "kcore_items": core.removed_items,
            "kcore_interactions": core.removed_interactions,
        },
    )


class Reviews(NamedTuple):
    users: list[str]
    items: list[str]
    times: list[int]
    line_of: list[int]  # file line of each kept review
    lines: int  # lines read


def _read_reviews(path: Path, layout: Layout, skips: SkipLog, local: bool) -> Reviews:
    reviews = Reviews([], [], [], [], 0)
    line_number = 0
    for line_number, line in _gzip_lines(path, local):
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            skips.skip("malformed_review", f"{where}: invalid JSON ({err})")
            continue
        problem = _missing(record, (layout.user_field, layout.item_field), layout.time_field)
        if problem:
            skips.skip("malformed_review", f"{where}: {problem}")
            continue
        reviews.users.append(record[layout.user_field])
        reviews.items.append(record[layout.item_field])
        reviews.times.append(record[layout.time_field])
        reviews.line_of.append(line_number)
    return reviews._replace(lines=line_number)


def _missing(record: Any, id_fields: tuple[str, ...], time_field: str) -> str:
    """What is wrong with a review record, naming the field; "" when nothing is."""
    if not isinstance(record, dict):
        return "expected an object"
    for key in id_fields:
        if not isinstance(record.get(key), str) or not record[key]:
            return f"missing field '{key}'"
    time = record.get(time_field)
    if isinstance(time, bool) or not isinstance(time, (int, float)):
        return f"missing field '{time_field}'"
    if not math.isfinite(time):  # json reads NaN and Infinity; they cannot be sorted
        return f"field '{time_field}' is {time}, not a finite number"
    return ""


def _read_meta(
    path: Path, layout: Layout, needed: set[str], skips: SkipLog, local: bool
) -> tuple[dict[str, Item], int]:
    """Items of ``needed`` that have a valid metadata line, and how many lines were parsed."""
    # Cheap look at the id so that unneeded lines are never parsed.
    quick_id = re.compile(rf"""['"]{layout.meta_item_field}['"]\s*:\s*['"]([^'"]*)['"]""".encode())
    metadata: dict[str, Item] = {}
    parsed = 0
    for line_number, line in _gzip_lines(path, local):
        match = quick_id.search(line)
        if match is not None and match.group(1).decode("utf-8", "replace") not in needed:
            continue
        parsed += 1
        where = f"{path}:{line_number}"
        try:
            record = layout.parse_meta(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            skips.skip("malformed_meta", f"{where}: not UTF-8 (byte at column {err.start + 1})")
            continue
        except TypeError as err:  # literal_eval: an unhashable key ({[1]: 2}) or set member
            skips.skip("malformed_meta", f"{where}: cannot parse (TypeError: {err})")
            continue
        except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
            skips.skip("malformed_meta", f"{where}: cannot parse ({type(err).__name__})")
            continue
        item, problem = _meta_item(record, layout)
        if item is None:
            skips.skip("malformed_meta", f"{where}: {problem}")
        elif item.source_id in needed and item.source_id not in metadata:
            metadata[item.source_id] = item  # a repeated id keeps its first line
    return metadata, parsed


def _meta_item(record: Any, layout: Layout) -> tuple[Item | None, str]:
    """Map one metadata record of either release to an :class:`Item` (id 0 for now)."""
    if not isinstance(record, dict):
        return None, "expected a dict"
    source_id = record.get(layout.meta_item_field)
    if not isinstance(source_id, str) or not source_id:
        return None, f"missing field '{layout.meta_item_field}'"
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        return None, "field 'title' is not a string"
    if layout.meta_item_field == "asin":  # 2014
        categories = record.get("categories") or []
        if not isinstance(categories, list) or not all(
            isinstance(p, list) and all(isinstance(c, str) for c in p) for p in categories
        ):
            return None, "field 'categories' is not a list of category paths"
        brand, image = record.get("brand"), record.get("imUrl")
    else:  # 2023: one flat path; the store is the brand
        path = record.get("categories") or []
        if not isinstance(path, list) or not all(isinstance(c, str) for c in path):
            return None, "field 'categories' is not a list of strings"
        main = record.get("main_category")
        categories = [path] if path else [[main]] if isinstance(main, str) and main else []
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        brand = record.get("store") or details.get("Brand")
        images = record.get("images") or []
        if not isinstance(images, list):
            return None, f"field 'images' is {images!r}, not a list"
        image = next(
            (i.get("large") or i.get("hi_res") for i in images if isinstance(i, dict)), None
        )
    description = record.get("description")
    if isinstance(description, list):  # 2023 (and some 2014 lines): a list of paragraphs
        description = " ".join(str(d) for d in description if d)
    price = record.get("price")
    # Prices are sometimes strings ("$12.99", "from 5.00"): kept only when numeric and finite
    # (literal_eval reads 1e400 as inf, json reads NaN; neither is a price, nor valid JSON).
    numeric = isinstance(price, (int, float)) and not isinstance(price, bool)
    price = float(price) if numeric and math.isfinite(price) else None
    return Item(
        item_id=0,
        source_id=source_id,
        title=title or None,
        brand=str(brand) if brand else None,
        categories=tuple(tuple(p) for p in categories),
        description=str(description) if description else None,
        price=price,
        image=str(image) if image else None,
    ), ""


def _gzip_lines(path: Path, local: bool) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, raw line)`` of non-empty lines; a broken gzip is one clear error.

    ``local``: the file came from ``download.local_dir`` (a copy the user provides), not from
    our own download into ``data/raw`` (which a rerun fetches again once deleted)."""
    line_number = 0
    try:
        with gzip.open(path, "rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    yield line_number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        remedy = (
            "replace it with a complete copy (download.local_dir)"
            if local
            else "delete it and rerun to download it again"
        )
        raise SourceError(
            f"{path}:{line_number + 1}: truncated or corrupt gzip ({err}); {remedy}"
        ) from None
