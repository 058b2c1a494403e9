"""Pipeline files: atomic folders, the user's umask, no NaN, one-line errors for bad records."""

from __future__ import annotations

import json
import math
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deepinterestgr.common import io


def test_new_folder_replaces_the_old_one_whole_and_keeps_it_on_error(tmp_path):
    out = tmp_path / "data" / "mine"
    io.write_json(out / "old.json", {"run": 1})
    with pytest.raises(RuntimeError), io.new_folder(out) as folder:
        io.write_json(folder / "items.json", {"run": 2})
        raise RuntimeError("killed mid-write")
    assert [p.name for p in out.iterdir()] == ["old.json"]  # the old output, untouched
    with io.new_folder(out) as folder:
        io.write_json(folder / "items.json", {"run": 3})
        assert not (out / "items.json").exists()  # nothing visible before the swap
    assert [p.name for p in out.iterdir()] == ["items.json"]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["mine"]  # no temporary left


def test_new_folder_clears_what_a_killed_run_left(tmp_path):
    stale = tmp_path / ".mine.abc123.tmp"
    (stale / "raw").mkdir(parents=True)
    with io.new_folder(tmp_path / "mine") as folder:
        io.write_json(folder / "a.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


WRITE_ALL = """
import os, sys
os.umask(int(sys.argv[1], 8))
from deepinterestgr.common import io
from deepinterestgr.llm.cache import AnswerCache
io.write_json("out/a.json", {{}})
io.write_jsonl("out/b.jsonl", [{{}}])
with io.new_folder("out/stage") as folder:
    io.write_json(folder / "c.json", {{}})
AnswerCache("out/cache").put("ab" * 32, {{}})
"""


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_files_and_folders_get_the_users_umask(tmp_path, umask, file_mode, dir_mode):
    subprocess.run(
        [sys.executable, "-c", WRITE_ALL.format(), oct(umask)[2:]], cwd=tmp_path, check=True
    )
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) == 4
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path
    assert stat.S_IMODE((tmp_path / "out" / "stage").stat().st_mode) == dir_mode


@pytest.mark.parametrize("price", [math.nan, math.inf])
def test_writers_refuse_nan_and_infinity_naming_the_field(tmp_path, price):
    item = io.Item(0, "A0", "Lip oil", price=price)
    with pytest.raises(io.DataFormatError, match=r"items\.jsonl: record 1: field 'price' is not"):
        io.write_items(tmp_path / "items.jsonl", [item])
    with pytest.raises(io.DataFormatError, match=r"m\.json: field 'sft\.hr\[1\]' is not a finite"):
        io.write_json(tmp_path / "m.json", {"sft": {"hr": [0.1, price]}})
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def _items_file(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = json.dumps({"item_id": 0, "source_id": "A0", "title": "Lip oil"}).encode()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            b'{"item_id": 1, "source_id": "A1", "title": "Caf\xe9"}',
            r":2: not UTF-8 \(byte 0xe9 at column 48\)",
        ),
        (
            b'{"item_id": 1, "source_id": "A1", "price": NaN}',
            r":2: invalid JSON \(NaN is not a JSON number\)",
        ),
        (
            b'{"item_id": 1, "source_id": "A1", "price": "12"}',
            r":2: field 'price' is '12', expected a number",
        ),
        (b'{"item_id": 1, "source_id": 7}', r":2: field 'source_id' is 7, expected a string"),
        (
            b'{"item_id": 1, "source_id": "A1", "categories": 5}',
            r":2: field 'categories' is 5, expected",
        ),
        (
            b'{"item_id": "1", "source_id": "A1"}',
            r":2: field 'item_id' is '1', expected an integer",
        ),
    ],
)
def test_readers_name_file_line_and_field(tmp_path, line, message):
    path = _items_file(tmp_path, [GOOD, line])
    with pytest.raises(io.DataFormatError, match=r"items\.jsonl" + message):
        io.read_items(path)


def test_user_and_interest_readers_check_types(tmp_path):
    users = tmp_path / "users.jsonl"
    users.write_text('{"user_id": 0, "source_id": "u", "train": [1, "2"], "valid": 3, "test": 4}\n')
    with pytest.raises(io.DataFormatError, match=r"users\.jsonl:1: field 'train\[1\]' is '2'"):
        io.read_users(users)
    rows = tmp_path / "interests.jsonl"
    rows.write_text('{"item_id": 0, "interests": [{"descriptor": "a b", "confidence": "high"}]}\n')
    with pytest.raises(
        io.DataFormatError, match=r"interests\.jsonl:1: interests\[0\]: field 'confidence' is"
    ):
        io.read_item_interests(rows)
