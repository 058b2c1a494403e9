"""The ``precomputed`` mining backend: import interests mined elsewhere from a JSON-lines file.

Mining a catalogue with an LLM costs money and hours; once done, the result is a file any
run can reuse. Format (that of ``../shared/data/amazon/beauty/interests.jsonl``), one object
per line, keyed by the item's source id::

    {"asin": "B004756YJA", "descriptors": [
        {"descriptor": "salon-quality manicure at home", "confidence": 0.9}, ...]}

Every line is checked; the first bad one stops the import with a one-line error naming the
file, the line and the field (bad JSON, a missing field, a confidence outside [0, 1], an
empty descriptor, an asin not in the catalogue, an asin given twice). Items without a line
get an empty interest list; their count is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepinterestgr.common import io

logger = logging.getLogger(__name__)


def _interest(record: Any, model_name: str, where: str, field: str) -> io.Interest:
    """One ``{"descriptor", "confidence"}`` object as an Interest, validated.

    ``where`` is ``file:line`` and ``field`` the object's place in the line, for messages.
    """
    if not isinstance(record, dict):
        raise io.DataFormatError(
            f"{where}: field '{field}' must be an object with 'descriptor' and 'confidence'"
        )
    for key in ("descriptor", "confidence"):
        if key not in record:
            raise io.DataFormatError(f"{where}: missing field '{field}.{key}'")
    descriptor, confidence = record["descriptor"], record["confidence"]
    if not isinstance(descriptor, str) or not descriptor.strip():
        raise io.DataFormatError(
            f"{where}: field '{field}.descriptor' must be a non-empty string, not {descriptor!r}"
        )
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not math.isfinite(confidence)
        or not 0.0 <= confidence <= 1.0
    ):
        raise io.DataFormatError(
            f"{where}: field '{field}.confidence' must be a number in [0, 1], not {confidence!r}"
        )
    return io.Interest(descriptor.strip(), float(confidence), (model_name,))


def read_precomputed(
    path: str | Path, items: Sequence[io.Item], model_name: str
) -> list[io.ItemInterests]:
    """Read precomputed interests for ``items`` from a JSON-lines file.

    Args:
        path: the JSON-lines file (module docstring).
        items: the catalogue; lines are matched on ``Item.source_id``.
        model_name: provenance written into every interest's ``models``
            (e.g. the model that mined the file).

    Returns:
        one :class:`~deepinterestgr.common.io.ItemInterests` per item, in the order of ``items``,
        ``offline`` False; interests sorted by confidence, strongest first (stable, so the
        file's own order breaks ties). Items without a line get ``interests == ()``.

    Raises:
        io.DataFormatError: on the first bad line, naming file, line and field.
    """
    position = {item.source_id: k for k, item in enumerate(items)}
    found: dict[int, tuple[io.Interest, ...]] = {}
    for line_number, record in io.iter_jsonl(path):
        where = f"{path}:{line_number}"
        for key in ("asin", "descriptors"):
            if key not in record:
                raise io.DataFormatError(f"{where}: missing field '{key}'")
        asin = record["asin"]
        if asin not in position:
            raise io.DataFormatError(f"{where}: field 'asin' {asin!r} is not in the catalogue")
        k = position[asin]
        if k in found:
            raise io.DataFormatError(f"{where}: field 'asin' {asin!r} repeats an earlier line")
        descriptors = record["descriptors"]
        if not isinstance(descriptors, list):
            raise io.DataFormatError(f"{where}: field 'descriptors' must be a list")
        interests = [
            _interest(entry, model_name, where, f"descriptors[{j}]")
            for j, entry in enumerate(descriptors)
        ]
        found[k] = tuple(sorted(interests, key=lambda interest: -interest.confidence))
    missing = len(items) - len(found)
    if missing:
        logger.warning(
            "%s: no interests for %s of %s items (they get an empty list)",
            path,
            f"{missing:,}",
            f"{len(items):,}",
        )
    logger.info("%s: read interests for %s items", path, f"{len(found):,}")
    return [
        io.ItemInterests(item.item_id, found.get(k, ()), offline=False)
        for k, item in enumerate(items)
    ]
