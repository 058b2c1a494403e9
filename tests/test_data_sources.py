"""Loaders of the download stage: synthetic generator, benchmark format, k-core, dispatch."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deepinterestgr.common.params import DownloadParams, SyntheticParams
from deepinterestgr.data_sources import (
    SkipLog,
    SourceError,
    benchmark,
    load_source,
    statistics,
    synthetic,
)
from deepinterestgr.data_sources.kcore import kcore

BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon" / "beauty"
SMALL = SyntheticParams(
    num_users=600,
    num_items=120,
    num_interests=8,
    min_length=5,
    max_length=15,
    habit_strength=0.6,
    image_size=8,
)


def download_params(**changes) -> DownloadParams:
    params = DownloadParams(
        source="synthetic",
        category="Beauty",
        local_dir=None,
        kcore=5,
        max_skip_rate=0.0,
        synthetic=SMALL,
    )
    return replace(params, **changes)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_per_seed():
    first, again, other = (synthetic.generate(SMALL, seed) for seed in (7, 7, 8))
    assert first.items == again.items and first.users == again.users
    assert all(np.array_equal(first.images[k], again.images[k]) for k in first.images)
    assert first.users != other.users


def test_synthetic_has_the_requested_shape_and_no_repeats():
    data = synthetic.generate(SMALL, seed=1)
    assert [item.item_id for item in data.items] == list(range(SMALL.num_items))
    assert [user.user_id for user in data.users] == list(range(SMALL.num_users))
    for user in data.users:
        assert SMALL.min_length <= len(user.items) <= SMALL.max_length
        assert len(set(user.items)) == len(user.items)
    for item in data.items:
        assert item.title and item.brand and item.description and item.price > 0
        assert item.categories[0][0] == "Beauty"
        assert data.images[item.image].shape == (8, 8, 3)
        assert data.images[item.image].dtype == np.uint8


def test_synthetic_text_reflects_the_latent_interest():
    # Items of one category path (= one interest) share brands; different ones share none.
    data = synthetic.generate(SMALL, seed=1)
    brands: dict[tuple[str, ...], set[str]] = {}
    for item in data.items:
        brands.setdefault(item.categories[0], set()).add(item.brand)
    assert len(brands) == SMALL.num_interests
    groups = list(brands.values())
    assert all(a.isdisjoint(b) for k, a in enumerate(groups) for b in groups[k + 1 :])


def hit_rate_at_10(scores_for, users) -> float:
    hits = 0
    for user in users:
        scores = scores_for(user.valid_history).astype(float)
        scores[list(user.valid_history)] = -np.inf  # no user repeats an item
        hits += user.valid_target in np.argsort(-scores, kind="stable")[:10]
    return hits / len(users)


def test_synthetic_sequences_carry_structure_popularity_cannot_learn():
    data = synthetic.generate(SMALL, seed=3)
    n = SMALL.num_items
    popularity, transitions = np.zeros(n), np.zeros((n, n))
    for user in data.users:
        history = user.valid_history
        np.add.at(popularity, list(history), 1)
        np.add.at(transitions, (list(history[:-1]), list(history[1:])), 1)
    popular = hit_rate_at_10(lambda h: popularity, data.users)
    # First-order Markov: score = transitions from the last item, popularity breaks ties.
    markov = hit_rate_at_10(lambda h: transitions[h[-1]] + 1e-3 * popularity, data.users)
    assert markov > popular + 0.3, (markov, popular)


def test_synthetic_rejects_more_interests_than_vocabularies():
    with pytest.raises(ValueError, match=r"download.synthetic.num_interests must be in 2..16"):
        synthetic.generate(replace(SMALL, num_interests=17), seed=0)


# --------------------------------------------------------------------------- k-core


def test_kcore_iterates_until_stable():
    # Users 0-2 buy items 0-2 (a 3-core); user 3 buys items 0 and 3; item 3 has one buyer.
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    items = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 3])
    core = kcore(users, items, min_user=3, min_item=3)
    # Round 1 drops user 3 (2 items) and item 3 (1 buyer); round 2 changes nothing.
    assert core.keep.tolist() == [True] * 9 + [False, False]
    assert (core.rounds, core.removed_users, core.removed_items) == (2, 1, 1)
    assert core.removed_interactions == 2


def test_kcore_cascades():
    users = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    items = np.array([0, 1, 2, 1, 3, 0, 2, 4, 0, 2, 4])
    core = kcore(users, items, min_user=3, min_item=2)
    # Round 1 drops user 1 (2 items) and item 3; so item 1 keeps one buyer and goes in
    # round 2; so user 0 keeps 2 items and goes in round 3; round 4 changes nothing.
    assert core.keep.tolist() == [False] * 5 + [True] * 6
    assert (core.rounds, core.removed_users, core.removed_items) == (4, 2, 2)


# --------------------------------------------------------------------------- benchmark


def write_benchmark(folder: Path, sequences: list[str], items: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user_sequence.txt").write_text("".join(line + "\n" for line in sequences))
    (folder / "items.jsonl").write_text("".join(line + "\n" for line in items))
    return folder


def item_line(asin: str, **fields) -> str:
    return json.dumps({"asin": asin, "title": f"Title {asin}", "brand": None, **fields})


GOOD_ITEMS = [item_line(a, categories=[["Beauty", "Nails"]]) for a in ("B1", "B2", "B3", "B4")]


def test_benchmark_numbers_items_in_file_order_and_splits_leave_one_out(tmp_path):
    folder = write_benchmark(tmp_path, ["u1 B3 B1 B2", "u2 B1 B2 B3 B4"], GOOD_ITEMS)
    data = benchmark.load(folder, SkipLog(0.0))
    assert [item.source_id for item in data.items] == ["B1", "B2", "B3", "B4"]
    assert data.items[0].categories == (("Beauty", "Nails"),)
    first, second = data.users
    assert (first.source_id, first.items, first.train, first.valid_target, first.test_target) == (
        "u1",
        (2, 0, 1),
        (2,),
        0,
        1,
    )
    assert second.items == (0, 1, 2, 3)
    stats = statistics(data)
    assert stats["interactions"] == 7 and stats["split"]["train_interactions"] == 3


@pytest.mark.parametrize(
    ("sequences", "items", "message"),
    [
        (
            ["u1 B1 B2 B3"],
            [*GOOD_ITEMS[:1], "{not json", *GOOD_ITEMS[1:]],
            r"items\.jsonl:2: invalid JSON \(.*\) \(malformed_item\); 1 of 5 records",
        ),
        (
            ["u1 B1 B2 B3"],
            [*GOOD_ITEMS, json.dumps({"title": "no id"})],
            r"items\.jsonl:5: missing field 'asin' \(malformed_item\)",
        ),
        (
            ["u1 B1 B2 B3"],
            [*GOOD_ITEMS, item_line("B5", categories="Beauty")],
            r"items\.jsonl:5: field 'categories' is not a list of category paths",
        ),
        (
            ["u1 B1 B2 B3", "u2 B1 B9 B3"],
            GOOD_ITEMS,
            r"user_sequence\.txt:2: item 'B9' has no line in items\.jsonl \(unknown_item\); "
            r"1 of 2 records \(50\.00%\) skipped for this reason, above "
            r"download\.max_skip_rate=0\.0",
        ),
        (
            ["u1 B1 B2 B3", "u2 B1 B2"],
            GOOD_ITEMS,
            r"user_sequence\.txt:2: user 'u2' has 2 items, leave-one-out needs 3 \(short_user\)",
        ),
        (
            ["u1 B1 B2 B3", "u1 B1 B2 B3"],
            GOOD_ITEMS,
            r"user_sequence\.txt:2: field 'user': duplicate",
        ),
        (
            ["u1 B1 B2 B3"],
            [*GOOD_ITEMS, GOOD_ITEMS[0]],
            r"items\.jsonl:5: field 'asin': duplicate id 'B1'",
        ),
    ],
)
def test_benchmark_bad_input_names_file_line_and_field(tmp_path, sequences, items, message):
    folder = write_benchmark(tmp_path, sequences, items)
    with pytest.raises(SourceError, match=message) as info:
        benchmark.load(folder, SkipLog(0.0))
    assert str(info.value).startswith(str(folder)) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            ("items.jsonl", 4, b'"Title B4"', b'"Titl\xe9 B4"'),
            r"items\.jsonl:4: not UTF-8 \(byte 0xe9 at column \d+\) \(malformed_item\)",
        ),
        (
            ("user_sequence.txt", 1, b"u1", b"u\xff1"),
            r"user_sequence\.txt:1: not UTF-8 \(byte 0xff at column 2\) \(malformed_user\)",
        ),
        (
            ("items.jsonl", 4, b'"brand": null', b'"price": NaN'),
            r"items\.jsonl:4: field 'price' is nan, not a finite number \(malformed_item\)",
        ),
        (
            ("items.jsonl", 4, b'"brand": null', b'"price": 1e400'),
            r"items\.jsonl:4: field 'price' is inf, not a finite number",
        ),
    ],
)
def test_benchmark_damaged_bytes_and_numbers_name_file_line_and_field(tmp_path, damage, message):
    folder = write_benchmark(tmp_path, ["u1 B1 B2 B3", "u2 B2 B3 B4"], GOOD_ITEMS)
    name, line, old, new = damage
    lines = (folder / name).read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(old, new)
    (folder / name).write_bytes(b"\n".join(lines))
    with pytest.raises(SourceError, match=message) as info:
        benchmark.load(folder, SkipLog(0.0))
    assert "\n" not in str(info.value)
    # Under a looser download.max_skip_rate the bad record is a counted skip.
    data = benchmark.load(folder, SkipLog(1.0))
    assert sum(data.skipped.values()) >= 1 and len(data.users) == 1


def test_a_benchmark_without_users_or_items_fails_in_download(tmp_path):
    folder = write_benchmark(tmp_path, [], GOOD_ITEMS)
    with pytest.raises(SourceError, match=r"user_sequence\.txt: no users \(0 lines read; none"):
        benchmark.load(folder, SkipLog(0.0))
    folder = write_benchmark(tmp_path / "all_short", ["u1 B1", "u2 B2"], GOOD_ITEMS)
    with pytest.raises(SourceError, match=r"no users \(2 lines read; short_user: 2\)"):
        benchmark.load(folder, SkipLog(1.0))
    folder = write_benchmark(tmp_path / "no_items", ["u1 B1 B2 B3"], [])
    with pytest.raises(SourceError, match=r"items\.jsonl: no items \(0 lines read\)"):
        benchmark.load(folder, SkipLog(0.0))


def test_benchmark_skips_are_counted_below_the_threshold(tmp_path):
    sequences = ["u1 B1 B2 B3", "u2 B1 B2", "u3 B2 B3 B4", "u4 B1 B9 B2"]
    folder = write_benchmark(tmp_path, sequences, GOOD_ITEMS)
    data = benchmark.load(folder, SkipLog(0.5))
    assert [user.source_id for user in data.users] == ["u1", "u3"]
    assert data.skipped == {"short_user": 1, "unknown_item": 1}
    assert statistics(data)["skipped"] == {"short_user": 1, "unknown_item": 1}


def test_benchmark_without_its_files_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match=r"no file 'user_sequence\.txt' \(expected a benchmark"):
        benchmark.load(tmp_path, SkipLog(0.0))


@pytest.mark.skipif(not BEAUTY.is_dir(), reason="the Amazon Beauty benchmark is not present")
def test_the_real_beauty_benchmark_has_the_published_size():
    data = benchmark.load(BEAUTY, SkipLog(0.0))
    stats = statistics(data)
    assert (stats["users"], stats["items"], stats["interactions"]) == (22_363, 12_101, 198_502)
    assert stats["split"] == {
        "train_interactions": 198_502 - 2 * 22_363,
        "valid_users": 22_363,
        "test_users": 22_363,
    }
    assert sum(len(user.train) for user in data.users) == 153_776
    assert stats["min_length"] == 5 and stats["items_without_interactions"] == 0
    # items.jsonl order is also the first-appearance order of the sequences (P5 numbering).
    first_seen = list(dict.fromkeys(i for user in data.users for i in user.items))
    assert first_seen == list(range(12_101))
    assert Counter(len(set(u.items)) == len(u.items) for u in data.users) == {True: 22_363}


# --------------------------------------------------------------------------- dispatch


def test_load_source_resolves_a_relative_local_dir_against_the_root(tmp_path):
    write_benchmark(tmp_path / "data" / "bench", ["u1 B1 B2 B3"], GOOD_ITEMS)
    params = download_params(source="benchmark", local_dir="data/bench")
    data = load_source(params, seed=0, root=tmp_path, raw_dir=tmp_path / "raw")
    assert data.source == "benchmark" and len(data.users) == 1


def test_load_source_benchmark_needs_a_folder(tmp_path):
    with pytest.raises(
        SourceError, match=re.escape("download.source=benchmark needs download.local_dir")
    ):
        load_source(download_params(source="benchmark"), seed=0, root=tmp_path, raw_dir=tmp_path)


def test_load_source_synthetic_uses_the_seed(tmp_path):
    data = load_source(download_params(), seed=5, root=tmp_path, raw_dir=tmp_path)
    assert data.users == synthetic.generate(SMALL, seed=5).users


# --------------------------------------------------------------------------- stage


def test_download_stage_writes_items_users_images_and_statistics(tmp_path, monkeypatch):
    import runpy

    import yaml

    from deepinterestgr.common import io
    from deepinterestgr.testing.stage_inputs import stage_command

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["download"]["synthetic"].update(num_users=50, num_items=40, num_interests=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", stage_command(root, "download")[1:])
    runpy.run_path(str(root / "stages" / "download.py"), run_name="__main__")

    items = io.read_items("data/download/items.jsonl")
    users = io.read_users("data/download/users.jsonl")
    assert (len(items), len(users)) == (40, 50)
    assert all((tmp_path / "data" / "download" / item.image).is_file() for item in items)
    stats = io.read_json("metrics/download.json")
    assert stats["source"] == "synthetic" and stats["users"] == 50 and stats["items"] == 40
    assert stats["interactions"] == sum(len(user.items) for user in users)
