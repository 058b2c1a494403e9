"""The ``benchmark`` source: the preprocessed format most papers share.

A folder with two files (e.g. ``../shared/data/amazon/beauty/``):

- ``user_sequence.txt``: one user per line, ``user_id item_id item_id ...``, items in
  chronological order, separated by whitespace;
- ``items.jsonl``: one item per line with ``asin`` (the id used in the sequences) and optional
  ``title``, ``brand``, ``categories`` (list of category paths), ``description``, ``price``,
  ``imUrl``.

Ids: users are numbered in file order; items in ``items.jsonl`` order (for Amazon Beauty this
is also the order of first appearance in ``user_sequence.txt``, the P5 numbering). Items that
no sequence mentions stay in the catalogue. The data is taken as preprocessed: no k-core and
no reordering.

Bad records are counted skips (a stage failure above ``download.max_skip_rate``, whose message
names the first bad file, line and field): an ``items.jsonl`` line that is not UTF-8 or not
JSON, lacks ``asin`` or has a mistyped field (a price must be a finite number); a user line
that is not UTF-8 (``malformed_user``) or names an item without an ``items.jsonl`` line (the
whole user is skipped: dropping one item would invent a transition); a user with fewer than
3 items (leave-one-out needs them). Duplicate ids are errors, and so is a folder that yields
no item or no user.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from deepinterestgr.common.io import DataFormatError, Item, decode_line
from deepinterestgr.data_sources.dataset import (
    MIN_SEQUENCE_LENGTH,
    Dataset,
    SkipLog,
    SourceError,
    build_dataset,
)

SEQUENCES_FILE = "user_sequence.txt"
ITEMS_FILE = "items.jsonl"


def load(folder: Path, skips: SkipLog) -> Dataset:
    """Load ``folder/user_sequence.txt`` and ``folder/items.jsonl`` (see module docstring)."""
    for name in (SEQUENCES_FILE, ITEMS_FILE):
        if not (folder / name).is_file():
            raise SourceError(f"{folder}: no file '{name}' (expected a benchmark folder)")
    metadata, lines = _read_items(folder / ITEMS_FILE, skips)
    skips.check("malformed_item", lines)
    if not metadata:
        raise SourceError(f"{folder / ITEMS_FILE}: no items ({lines:,} lines read)")
    sequences, lines = _read_sequences(folder / SEQUENCES_FILE, metadata, skips)
    for reason in ("malformed_user", "unknown_item", "short_user"):
        skips.check(reason, lines)
    if not sequences:
        skipped = ", ".join(f"{k}: {v:,}" for k, v in skips.counts.items()) or "none skipped"
        raise SourceError(f"{folder / SEQUENCES_FILE}: no users ({lines:,} lines read; {skipped})")
    return build_dataset("benchmark", sequences, metadata, list(metadata), skipped=skips.counts)


def _read_items(path: Path, skips: SkipLog) -> tuple[dict[str, Item], int]:
    metadata: dict[str, Item] = {}
    line_number = 0
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(decode_line(raw, where))
            except DataFormatError as err:
                skips.skip("malformed_item", str(err))
                continue
            except json.JSONDecodeError as err:
                skips.skip("malformed_item", f"{where}: invalid JSON ({err.msg})")
                continue
            item, problem = _item(record)
            if item is None:
                skips.skip("malformed_item", f"{where}: {problem}")
                continue
            if item.source_id in metadata:
                raise SourceError(f"{where}: field 'asin': duplicate id '{item.source_id}'")
            metadata[item.source_id] = item
    return metadata, line_number


def _item(record: Any) -> tuple[Item | None, str]:
    """An :class:`Item` (id 0 for now) or ``None`` and what is wrong, naming the field."""
    if not isinstance(record, dict):
        return None, "expected a JSON object"
    if not isinstance(record.get("asin"), str) or not record["asin"]:
        return None, "missing field 'asin'"
    for key in ("title", "brand", "description", "imUrl"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return None, f"field '{key}' is not a string"
    categories = record.get("categories") or []
    if not (
        isinstance(categories, list)
        and all(isinstance(p, list) and all(isinstance(c, str) for c in p) for p in categories)
    ):
        return None, "field 'categories' is not a list of category paths"
    price = record.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))):
        return None, "field 'price' is not a number"
    if price is not None and not math.isfinite(price):  # json reads NaN, Infinity and 1e400
        return None, f"field 'price' is {price}, not a finite number"
    return Item(
        item_id=0,
        source_id=record["asin"],
        title=record.get("title"),
        brand=record.get("brand"),
        categories=tuple(tuple(p) for p in categories),
        description=record.get("description"),
        price=None if price is None else float(price),
        image=record.get("imUrl"),
    ), ""


def _read_sequences(
    path: Path, metadata: dict[str, Item], skips: SkipLog
) -> tuple[list[tuple[str, list[str]]], int]:
    sequences: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    line_number = 0
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            where = f"{path}:{line_number}"
            try:
                fields = decode_line(raw, where).split()
            except DataFormatError as err:
                skips.skip("malformed_user", str(err))
                continue
            if not fields:
                continue
            user, items = fields[0], fields[1:]
            if user in seen:
                raise SourceError(f"{where}: field 'user': duplicate user '{user}'")
            seen.add(user)
            unknown = next((i for i in items if i not in metadata), None)
            if unknown is not None:
                skips.skip("unknown_item", f"{where}: item '{unknown}' has no line in {ITEMS_FILE}")
                continue
            if len(items) < MIN_SEQUENCE_LENGTH:
                skips.skip(
                    "short_user",
                    f"{where}: user '{user}' has {len(items)} items, leave-one-out needs "
                    f"{MIN_SEQUENCE_LENGTH}",
                )
                continue
            sequences.append((user, items))
    return sequences, line_number
