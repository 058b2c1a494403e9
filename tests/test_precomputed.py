"""Importing precomputed interests: the real Beauty file, missing items, bad-input messages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from deepinterestgr.common.io import DataFormatError, Interest, Item, iter_jsonl
from deepinterestgr.interests.precomputed import read_precomputed

BEAUTY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "amazon" / "beauty"


def _items(*asins: str) -> list[Item]:
    return [Item(k, asin, f"title {k}") for k, asin in enumerate(asins)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _line(asin: str, *pairs: tuple[object, object]) -> str:
    descriptors = [{"descriptor": d, "confidence": c} for d, c in pairs]
    return json.dumps({"asin": asin, "descriptors": descriptors})


@pytest.mark.skipif(not (BEAUTY / "interests.jsonl").exists(), reason="Beauty data absent")
def test_real_beauty_file_gives_every_item_three_to_five_descriptors():
    items = [
        Item(k, record["asin"], record.get("title"))
        for k, (_, record) in enumerate(iter_jsonl(BEAUTY / "items.jsonl"))
    ]
    rows = read_precomputed(BEAUTY / "interests.jsonl", items, "claude")
    assert len(rows) == len(items) == 12_101
    assert [row.item_id for row in rows] == list(range(len(items)))
    assert all(3 <= len(row.interests) <= 5 for row in rows)
    assert all(not row.offline for row in rows)
    for row in rows:
        confidences = [x.confidence for x in row.interests]
        assert confidences == sorted(confidences, reverse=True)
        assert all(
            0.0 <= c <= 1.0 and x.models == ("claude",)
            for x, c in zip(row.interests, confidences, strict=True)
        )
    assert rows[0].interests[0] == Interest("salon-quality manicure at home", 0.9, ("claude",))


def test_items_in_catalogue_order_sorted_strongest_first_and_missing_counted(tmp_path, caplog):
    path = _write(
        tmp_path / "interests.jsonl",
        [_line("B2", ("weak one", 0.2), ("strong one", 0.9)), "", _line("B1", ("only one", 0.5))],
    )
    with caplog.at_level(logging.WARNING):
        rows = read_precomputed(path, _items("B1", "B2", "B3"), "m")
    assert [row.item_id for row in rows] == [0, 1, 2]
    assert rows[0].interests == (Interest("only one", 0.5, ("m",)),)
    assert [x.descriptor for x in rows[1].interests] == ["strong one", "weak one"]
    assert rows[2].interests == ()
    assert "no interests for 1 of 3 items" in caplog.text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"asin": "B1", "descriptors": [', ":1: invalid JSON"),
        ('{"descriptors": []}', ":1: missing field 'asin'"),
        ('{"asin": "B1"}', ":1: missing field 'descriptors'"),
        ('{"asin": "B1", "descriptors": {}}', ":1: field 'descriptors' must be a list"),
        (_line("B9", ("x y", 0.5)), ":1: field 'asin' 'B9' is not in the catalogue"),
        (_line("B1", ("x y", 1.5)), ":1: field 'descriptors[0].confidence' must be a number in"),
        (_line("B1", ("x y", 0.5), ("z w", -0.1)), "field 'descriptors[1].confidence'"),
        (_line("B1", ("x y", "high")), "field 'descriptors[0].confidence'"),
        (_line("B1", ("x y", True)), "field 'descriptors[0].confidence'"),
        (_line("B1", ("  ", 0.5)), "field 'descriptors[0].descriptor' must be a non-empty"),
        ('{"asin": "B1", "descriptors": [{"descriptor": "x y"}]}', "'descriptors[0].confidence'"),
        ('{"asin": "B1", "descriptors": ["x y"]}', "field 'descriptors[0]' must be an object"),
    ],
)
def test_bad_input_gets_one_line_naming_file_line_and_field(tmp_path, line, expected):
    path = _write(tmp_path / "bad.jsonl", [line])
    with pytest.raises(DataFormatError) as error:
        read_precomputed(path, _items("B1"), "m")
    message = str(error.value)
    assert message.startswith(f"{path}:1")
    assert expected in message
    assert "\n" not in message


def test_repeated_asin_names_the_second_line(tmp_path):
    path = _write(tmp_path / "twice.jsonl", [_line("B1", ("x y", 0.5)), _line("B1", ("x y", 0.5))])
    with pytest.raises(DataFormatError, match=r"twice\.jsonl:2: field 'asin' 'B1' repeats"):
        read_precomputed(path, _items("B1"), "m")
