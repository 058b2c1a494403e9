"""File formats shared between stages: the one place that reads and writes pipeline artefacts.

Formats (by artefact folder, :mod:`deepinterestgr.common.artifacts`; ``dvc.yaml`` says where
each folder lives):

=================================  =====================================================
dataset ``items.jsonl``            one :class:`Item` per line, ``item_id`` 0..N-1 in order
dataset ``users.jsonl``            one :class:`UserSequence` per line, ``user_id`` 0..U-1:
                                   the chronological item ids, split leave-one-out
interests ``items.jsonl``          one :class:`ItemInterests` per item (merged across backends)
interests ``users.jsonl``          one :class:`UserInterests` per user (training history only)
labelled interests ``items.jsonl`` one :class:`ItemInterests` per item whose descriptors
                                   carry ``p_positive`` and ``positive``
labelled interests ``quality.npy`` float32 ``[N]``: ``q_i`` in [0, 1] per item id
embeddings ``embeddings.npy``      float32 ``[N, d]``: row i embeds item i
embeddings ``texts.jsonl``         ``{"item_id", "text"}``: the exact text that was embedded
SIDs ``codes.npy``                 int64 ``[N, L+1]``: L codes then the collision suffix
=================================  =====================================================

Every writer is atomic (write to a temporary file, then rename), so a killed stage never
leaves a half-written artefact that a later stage would read as whole; a stage writes its
whole output folder the same way (:func:`new_folder`). Files get the mode the user's umask
gives (``0666 & ~umask``), as ``open`` would, not the 0600 of a temporary file. Writers refuse
NaN and infinities (not JSON); readers name the file, line and field of anything malformed,
undecodable bytes included.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepinterestgr.common.errors import PipelineError


class DataFormatError(ValueError, PipelineError):
    """A record in a pipeline file is malformed; the message names file, line and field."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Item:
    """One catalogue item. ``categories`` is a list of category paths (root first)."""

    item_id: int
    source_id: str
    title: str | None
    brand: str | None = None
    categories: tuple[tuple[str, ...], ...] = ()
    description: str | None = None
    price: float | None = None
    image: str | None = None  # a URL, or a path relative to the items file's folder


@dataclass(frozen=True)
class UserSequence:
    """A user's chronological item ids, split leave-one-out (METHOD.md, evaluation).

    ``items[-1]`` is the test target, ``items[-2]`` the validation target and everything
    before them the training history.
    """

    user_id: int
    source_id: str
    items: tuple[int, ...]

    @property
    def train(self) -> tuple[int, ...]:
        return self.items[:-2]

    @property
    def valid_target(self) -> int:
        return self.items[-2]

    @property
    def test_target(self) -> int:
        return self.items[-1]

    @property
    def valid_history(self) -> tuple[int, ...]:
        """What the model sees when predicting the validation target."""
        return self.items[:-2]

    @property
    def test_history(self) -> tuple[int, ...]:
        """What the model sees when predicting the test target (validation item included)."""
        return self.items[:-1]


@dataclass(frozen=True)
class Interest:
    """One mined deep-interest descriptor of an item or user.

    ``models`` names every backend/model that proposed it (provenance; ``len(models)`` is
    the agreement). ``p_positive`` and ``positive`` are filled by the ``label`` stage.
    """

    descriptor: str
    confidence: float
    models: tuple[str, ...] = ()
    p_positive: float | None = None
    positive: bool | None = None


@dataclass(frozen=True)
class ItemInterests:
    item_id: int
    interests: tuple[Interest, ...]
    offline: bool = False  # True when written by the offline (no-LLM) backend


@dataclass(frozen=True)
class UserInterests:
    user_id: int
    interests: tuple[Interest, ...]
    offline: bool = False


# --------------------------------------------------------------------------- generic I/O


def _umask_modes() -> tuple[int, int]:
    # Read once, at import: os.umask can only be read by setting it, which is not thread-safe
    # (the answer cache writes from threads).
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask, 0o777 & ~umask


FILE_MODE, DIR_MODE = _umask_modes()  # what open() and mkdir() would give under the umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600 files
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def new_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; on success it replaces ``folder``.

    A stage writes all its outputs into the temporary folder, so readers, and a run killed at
    any moment, find the previous folder whole or the new one whole, never a mix. (Between
    the two renames of the swap the folder is briefly absent: a later stage then fails on a
    missing file, it never reads half an output.) On an error the temporary folder is removed
    and ``folder`` is left as it was. Leftovers of a killed run are removed first: the stage's
    lock (stage_guard) makes this process the only writer.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    os.chmod(tmp, DIR_MODE)  # mkdtemp makes 0700 folders
    try:
        yield tmp
        if folder.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent)
            )
            os.replace(folder, old)  # onto the empty folder just made: a unique, stale-marked name
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _non_finite(value: Any, where: str = "") -> str | None:
    """The dotted field path of the first NaN or infinity in ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = (
            (f"{where}.{k}" if where else str(k), v) for k, v in value.items()
        )
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{k}]", v) for k, v in enumerate(value))
    else:
        return None
    return next((bad for key, v in items if (bad := _non_finite(v, key)) is not None), None)


def _dumps(record: Any, where: str, **options: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities, naming the field, instead of writing
    ``NaN`` / ``Infinity`` (which no JSON parser but Python's reads)."""
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False, **options)
    except ValueError:
        field = _non_finite(record)
        raise DataFormatError(
            f"{where}: field '{field}' is not a finite number (JSON has no NaN or Infinity)"
        ) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _loads(text: str, where: str, name_line: bool = False) -> Any:
    """``json.loads`` that also refuses ``NaN``/``Infinity``; errors name ``where`` (and the
    line within ``text`` if ``name_line``: a whole file)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        at = f"{where}:{err.lineno}" if name_line else where
        raise DataFormatError(f"{at}: invalid JSON ({err.msg})") from None
    except ValueError as err:
        raise DataFormatError(f"{where}: invalid JSON ({err})") from None


def decode_line(raw: bytes, where: str) -> str:
    """UTF-8 text of one line; bad bytes are a :class:`DataFormatError` naming the column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(
            f"{where}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
        ) from None


def write_json(path: str | Path, data: Any) -> None:
    text = _dumps(data, str(path), indent=2, sort_keys=False)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.write("\n")


def read_json(path: str | Path) -> Any:
    with open(path, "rb") as handle:
        raw = handle.read()
    return _loads(decode_line(raw, str(path)), str(path), name_line=True)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line, atomically; returns the number of lines."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(_dumps(record, f"{path}: record {count + 1}"))
            handle.write("\n")
            count += 1
    return count


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-empty line; bad bytes or JSON name the line."""
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            where = f"{path}:{line_number}"
            line = decode_line(raw, where)
            if not line.strip():
                continue
            record = _loads(line, where)
            if not isinstance(record, dict):
                raise DataFormatError(f"{where}: expected a JSON object")
            yield line_number, record


def save_array(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def write_ranks(path: str | Path, split: str, ranks: dict[str, np.ndarray]) -> None:
    """Each user's target rank per ranker on ``split`` (int ``[U]``, -1 = not in the list),
    one compact line per ranker: git-tracked beside the metrics, so a later run can be compared
    with this one user by user (paired bootstrap)."""
    lines = [
        f'  "{name}": {json.dumps([int(r) for r in values])}' for name, values in ranks.items()
    ]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f'{{"split": "{split}", "ranks": {{\n' + ",\n".join(lines) + "\n}}\n")


def read_ranks(path: str | Path) -> dict[str, np.ndarray]:
    """What :func:`write_ranks` wrote: ranker -> int64 ``[U]``."""
    data = read_json(path)
    ranks = _require(data, "ranks", str(path))
    if not isinstance(ranks, dict):
        raise DataFormatError(f"{path}: field 'ranks': expected an object of rankers")
    return {name: np.asarray(values, dtype=np.int64) for name, values in ranks.items()}


def load_array(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _require(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise DataFormatError(f"{where}: missing field '{key}'")
    return record[key]


_KINDS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
}
_KIND_NAMES = {
    "int": "an integer",
    "number": "a number",
    "str": "a string",
    "bool": "true or false",
}


def _typed(record: dict[str, Any], key: str, kind: str, where: str, optional: bool = False) -> Any:
    """``record[key]``, checked to be of ``kind`` (None allowed, or the key absent, if optional)."""
    value = record.get(key) if optional else _require(record, key, where)
    if value is None and optional:
        return None
    if not _KINDS[kind](value):
        raise DataFormatError(
            f"{where}: field '{key}' is {value!r}, expected {_KIND_NAMES.get(kind, 'a ' + kind)}"
        )
    return value


def _int_list(record: dict[str, Any], key: str, where: str) -> list[int]:
    values = _typed(record, key, "list", where)
    for k, value in enumerate(values):
        if not _KINDS["int"](value):
            raise DataFormatError(f"{where}: field '{key}[{k}]' is {value!r}, expected an integer")
    return values


# --------------------------------------------------------------------------- items and users


def item_to_record(item: Item) -> dict[str, Any]:
    record = asdict(item)
    record["categories"] = [list(path) for path in item.categories]
    return record


def write_items(path: str | Path, items: Iterable[Item]) -> int:
    return write_jsonl(path, (item_to_record(item) for item in items))


def read_items(path: str | Path) -> list[Item]:
    """Read items; ids must be 0..N-1 in file order."""
    items = []
    for line_number, record in iter_jsonl(path):
        where = f"{path}:{line_number}"
        item_id = _typed(record, "item_id", "int", where)
        if item_id != len(items):
            raise DataFormatError(f"{where}: field 'item_id' is {item_id}, expected {len(items)}")
        categories = record.get("categories") or []
        if not (
            isinstance(categories, list)
            and all(isinstance(p, list) and all(isinstance(c, str) for c in p) for p in categories)
        ):
            raise DataFormatError(
                f"{where}: field 'categories' is {categories!r}, expected a list of category paths"
            )
        price = _typed(record, "price", "number", where, optional=True)
        items.append(
            Item(
                item_id=item_id,
                source_id=_typed(record, "source_id", "str", where),
                title=_typed(record, "title", "str", where, optional=True),
                brand=_typed(record, "brand", "str", where, optional=True),
                categories=tuple(tuple(p) for p in categories),
                description=_typed(record, "description", "str", where, optional=True),
                price=None if price is None else float(price),
                image=_typed(record, "image", "str", where, optional=True),
            )
        )
    return items


def write_users(path: str | Path, users: Iterable[UserSequence]) -> int:
    return write_jsonl(
        path,
        (
            {
                "user_id": user.user_id,
                "source_id": user.source_id,
                "train": list(user.train),
                "valid": user.valid_target,
                "test": user.test_target,
            }
            for user in users
        ),
    )


def read_users(path: str | Path) -> list[UserSequence]:
    """Read users; ids must be 0..U-1 in file order."""
    users = []
    for line_number, record in iter_jsonl(path):
        where = f"{path}:{line_number}"
        user_id = _typed(record, "user_id", "int", where)
        if user_id != len(users):
            raise DataFormatError(f"{where}: field 'user_id' is {user_id}, expected {len(users)}")
        items = (
            *_int_list(record, "train", where),
            _typed(record, "valid", "int", where),
            _typed(record, "test", "int", where),
        )
        users.append(UserSequence(user_id, _typed(record, "source_id", "str", where), items))
    return users


# --------------------------------------------------------------------------- interests


def _interest_to_record(interest: Interest) -> dict[str, Any]:
    record: dict[str, Any] = {
        "descriptor": interest.descriptor,
        "confidence": interest.confidence,
        "models": list(interest.models),
    }
    if interest.p_positive is not None:
        record["p_positive"] = interest.p_positive
        record["positive"] = interest.positive
    return record


def _interest_from_record(record: Any, where: str) -> Interest:
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected an object, found {record!r}")
    models = _typed(record, "models", "list", where, optional=True) or []
    if not all(isinstance(m, str) for m in models):
        raise DataFormatError(f"{where}: field 'models' is {models!r}, expected a list of strings")
    p_positive = _typed(record, "p_positive", "number", where, optional=True)
    return Interest(
        descriptor=_typed(record, "descriptor", "str", where),
        confidence=float(_typed(record, "confidence", "number", where)),
        models=tuple(models),
        p_positive=None if p_positive is None else float(p_positive),
        positive=_typed(record, "positive", "bool", where, optional=True),
    )


def _interest_rows(path: str | Path, id_field: str, cls: type) -> list[Any]:
    rows = []
    for line_number, record in iter_jsonl(path):
        where = f"{path}:{line_number}"
        interests = tuple(
            _interest_from_record(r, f"{where}: interests[{k}]")
            for k, r in enumerate(_typed(record, "interests", "list", where))
        )
        offline = bool(_typed(record, "offline", "bool", where, optional=True))
        rows.append(cls(_typed(record, id_field, "int", where), interests, offline))
    return rows


def _write_interest_rows(path: str | Path, rows: Iterable[Any], id_field: str) -> int:
    return write_jsonl(
        path,
        (
            {
                id_field: getattr(row, id_field),
                "offline": row.offline,
                "interests": [_interest_to_record(i) for i in row.interests],
            }
            for row in rows
        ),
    )


def write_item_interests(path: str | Path, rows: Iterable[ItemInterests]) -> int:
    return _write_interest_rows(path, rows, "item_id")


def read_item_interests(path: str | Path) -> list[ItemInterests]:
    return _interest_rows(path, "item_id", ItemInterests)


def write_user_interests(path: str | Path, rows: Iterable[UserInterests]) -> int:
    return _write_interest_rows(path, rows, "user_id")


def read_user_interests(path: str | Path) -> list[UserInterests]:
    return _interest_rows(path, "user_id", UserInterests)


# --------------------------------------------------------------------------- label


def align_item_interests(
    rows: Iterable[ItemInterests], num_items: int, source: str | Path
) -> list[ItemInterests]:
    """One row per item id 0..N-1, in order; an item without a row gets no interests.

    ``source`` names the file in errors: an id out of range or listed twice is a
    :class:`DataFormatError`.
    """
    by_id: dict[int, ItemInterests] = {}
    for k, row in enumerate(rows):
        if not 0 <= row.item_id < num_items:
            raise DataFormatError(
                f"{source}: record {k + 1}: field 'item_id' is {row.item_id}, "
                f"expected 0..{num_items - 1}"
            )
        if row.item_id in by_id:
            raise DataFormatError(f"{source}: record {k + 1}: item_id {row.item_id} appears twice")
        by_id[row.item_id] = row
    return [by_id.get(i, ItemInterests(i, ())) for i in range(num_items)]


# --------------------------------------------------------------------------- model weights


def write_state_dict(path: str | Path, state_dict: dict[str, Any]) -> None:
    """Save a torch state dict; equal weights give equal bytes."""
    import torch

    # Through a handle: given a path, torch would put the temporary file's random name into
    # the archive and a rerun would change the file for nothing.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state_dict, handle)


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Rows of equal keys as CSV with a header (DVC plots data); returns the number of rows."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            if count == 0:
                handle.write(",".join(row) + "\n")
            handle.write(",".join(str(value) for value in row.values()) + "\n")
            count += 1
    return count
