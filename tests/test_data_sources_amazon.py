"""Raw Amazon 2014 and 2023 loaders on small gzip fixtures written into tmp_path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from deepinterestgr.data_sources import SkipLog, SourceError, statistics
from deepinterestgr.data_sources.amazon import RawFiles, load, locate


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
    return path


def review_2014(user: str, asin: str, time: int) -> str:
    return json.dumps({"reviewerID": user, "asin": asin, "unixReviewTime": time, "overall": 5.0})


def meta_2014(asin: str) -> str:
    # Python literal, not JSON: single quotes, as in the real meta_<Category>.json.gz
    record = {
        "asin": asin,
        "title": f"Polish {asin}",
        "brand": "OPI",
        "categories": [["Beauty", "Makeup", "Nails"]],
        "price": 7.5,
        "imUrl": f"http://img/{asin}.jpg",
        "related": {"also_bought": ["X1", "X2"]},
    }
    return repr(record)


# Users a, b, c each review items A, B, C (a 3-core); user d reviews only A and D.
REVIEWS_2014 = [
    review_2014("a", "B", 20),
    review_2014("a", "A", 10),
    review_2014("b", "C", 5),
    review_2014("a", "C", 20),  # tie with B at time 20: file order keeps B first
    review_2014("b", "A", 7),
    review_2014("b", "B", 9),
    review_2014("c", "A", 1),
    review_2014("c", "B", 2),
    review_2014("c", "C", 3),
    review_2014("d", "A", 1),
    review_2014("d", "D", 2),
]
META_2014 = [meta_2014(a) for a in ("A", "B", "C", "D", "UNUSED")]


def files_2014(tmp_path: Path, reviews=REVIEWS_2014, meta=META_2014) -> RawFiles:
    return RawFiles(
        write_gz(tmp_path / "reviews_Beauty_5.json.gz", reviews),
        write_gz(tmp_path / "meta_Beauty.json.gz", meta),
    )


def test_amazon2014_sorts_by_time_stably_and_applies_the_kcore(tmp_path):
    data = load("amazon2014", files_2014(tmp_path), 3, SkipLog(0.0))
    sequences = {u.source_id: [data.items[i].source_id for i in u.items] for u in data.users}
    assert sequences == {"a": ["A", "B", "C"], "b": ["C", "A", "B"], "c": ["A", "B", "C"]}
    assert [item.source_id for item in data.items] == ["A", "B", "C"]  # first appearance
    item = data.items[0]
    assert (item.title, item.brand, item.categories, item.price, item.image) == (
        "Polish A",
        "OPI",
        (("Beauty", "Makeup", "Nails"),),
        7.5,
        "http://img/A.jpg",
    )
    assert data.filtered["kcore_users"] == 1 and data.filtered["kcore_items"] == 1
    assert statistics(data)["interactions"] == 9


def test_amazon_keeps_users_of_at_least_three_items_even_with_a_lower_kcore(tmp_path):
    data = load("amazon2014", files_2014(tmp_path), 1, SkipLog(0.0))
    assert [u.source_id for u in data.users] == ["a", "b", "c"]  # d has 2 items
    assert data.filtered["kcore_users"] == 1 and data.filtered["kcore_items"] == 1


def test_amazon_keeps_the_first_review_of_a_repeated_pair(tmp_path):
    reviews = [*REVIEWS_2014, review_2014("a", "A", 30)]
    data = load("amazon2014", files_2014(tmp_path, reviews), 3, SkipLog(0.0))
    assert data.filtered["duplicate_interactions"] == 1
    assert data.users[0].items == (0, 1, 2)


def test_amazon2023_reads_parent_asin_millisecond_timestamps_and_its_metadata(tmp_path):
    def review(user: str, asin: str, ms: int) -> str:
        return json.dumps({"user_id": user, "asin": "child", "parent_asin": asin, "timestamp": ms})

    reviews = [review("u", "P2", 2_000), review("u", "P1", 1_000), review("u", "P3", 3_000)]
    meta = [
        json.dumps(
            {
                "parent_asin": p,
                "title": f"Item {p}",
                "main_category": "All Beauty",
                "categories": [] if p == "P1" else ["Beauty", "Hair Care"],
                "store": "Brand" if p != "P3" else None,
                "details": {"Brand": "FromDetails"},
                "description": ["First.", "Second."],
                "price": None if p == "P1" else "from $5" if p == "P2" else 12.0,
                "images": [{"thumb": "t", "large": f"L{p}", "hi_res": None}],
            }
        )
        for p in ("P1", "P2", "P3")
    ]
    files = RawFiles(
        write_gz(tmp_path / "All_Beauty.jsonl.gz", reviews),
        write_gz(tmp_path / "meta_All_Beauty.jsonl.gz", meta),
    )
    data = load("amazon2023", files, 1, SkipLog(0.0))
    assert [item.source_id for item in data.items] == ["P1", "P2", "P3"]
    p1, p2, p3 = data.items
    assert p1.categories == (("All Beauty",),) and p2.categories == (("Beauty", "Hair Care"),)
    assert (p1.brand, p3.brand) == ("Brand", "FromDetails")
    assert p1.description == "First. Second." and p1.image == "LP1"
    assert (p1.price, p2.price, p3.price) == (None, None, 12.0)


@pytest.mark.parametrize(
    ("reviews", "meta", "message"),
    [
        (
            [*REVIEWS_2014[:3], "{broken", *REVIEWS_2014[3:]],
            META_2014,
            r"reviews_Beauty_5\.json\.gz:4: invalid JSON .* \(malformed_review\); 1 of 12 records",
        ),
        (
            [*REVIEWS_2014, json.dumps({"reviewerID": "a", "asin": "D"})],
            META_2014,
            r"reviews_Beauty_5\.json\.gz:12: missing field 'unixReviewTime' \(malformed_review\)",
        ),
        (
            [*REVIEWS_2014, json.dumps({"asin": "D", "unixReviewTime": 3})],
            META_2014,
            r"reviews_Beauty_5\.json\.gz:12: missing field 'reviewerID'",
        ),
        (
            REVIEWS_2014,
            [m for m in META_2014 if "'D'" not in m],
            r"reviews_Beauty_5\.json\.gz:11: field 'asin': 'D' has no line in "
            r"meta_Beauty\.json\.gz \(missing_metadata\); 1 of 11 records \(9\.09%\) skipped "
            r"for this reason, above "
            r"download\.max_skip_rate=0\.0",
        ),
        (
            REVIEWS_2014,
            [*META_2014[:1], "{'asin': 'B', 'title': ", *META_2014[2:]],
            r"meta_Beauty\.json\.gz:2: cannot parse \(SyntaxError\) \(malformed_meta\)",
        ),
        (
            REVIEWS_2014,
            [*META_2014[:2], repr({"asin": "C", "categories": "Beauty"}), *META_2014[3:]],
            r"meta_Beauty\.json\.gz:3: field 'categories' is not a list of category paths",
        ),
    ],
)
def test_amazon_bad_input_names_file_line_and_field(tmp_path, reviews, meta, message):
    with pytest.raises(SourceError, match=message) as info:
        load("amazon2014", files_2014(tmp_path, reviews, meta), 3, SkipLog(0.0))
    assert str(info.value).startswith(str(tmp_path)) and "\n" not in str(info.value)


def test_amazon_skips_below_the_threshold_are_counted(tmp_path):
    reviews = [*REVIEWS_2014, "{broken"]
    data = load("amazon2014", files_2014(tmp_path, reviews), 3, SkipLog(0.1))
    assert data.skipped == {"malformed_review": 1} and len(data.users) == 3


def test_a_truncated_gzip_is_one_clear_error(tmp_path):
    files = files_2014(tmp_path, REVIEWS_2014 * 50)
    data = files.reviews.read_bytes()
    files.reviews.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        SourceError, match=r"reviews_Beauty_5\.json\.gz:\d+: truncated or corrupt gzip"
    ):
        load("amazon2014", files, 3, SkipLog(0.0))


@pytest.mark.parametrize(
    ("bad_meta", "message"),
    [
        (
            "{'asin': 'B', 'title': 'x', 'categories': 5}",
            r"meta_Beauty\.json\.gz:2: field 'categories' is not a list of category paths",
        ),
        (
            "{'asin': 'B', [1, 2]: 'unhashable key'}",
            r"meta_Beauty\.json\.gz:2: cannot parse \(TypeError: .*unhashable",
        ),
        (b"{'asin': 'B', 'title': 'Caf\xe9'}", r"meta_Beauty\.json\.gz:2: not UTF-8"),
    ],
)
def test_amazon_wrong_types_and_literals_are_one_line_skips(tmp_path, bad_meta, message):
    meta = list(META_2014)
    files = files_2014(tmp_path, REVIEWS_2014, meta)
    lines = gzip.decompress(files.meta.read_bytes()).split(b"\n")
    lines[1] = bad_meta if isinstance(bad_meta, bytes) else bad_meta.encode()
    files.meta.write_bytes(gzip.compress(b"\n".join(lines)))
    with pytest.raises(SourceError, match=message) as info:
        load("amazon2014", files, 3, SkipLog(0.0))
    assert "\n" not in str(info.value) and "(malformed_meta)" in str(info.value)


def test_amazon_prices_and_times_that_are_not_finite(tmp_path):
    meta = [m.replace("'price': 7.5", "'price': 1e400") for m in META_2014]
    data = load("amazon2014", files_2014(tmp_path, REVIEWS_2014, meta), 3, SkipLog(0.0))
    assert all(item.price is None for item in data.items)  # inf is no price (nor JSON)
    reviews = [*REVIEWS_2014, '{"reviewerID": "a", "asin": "D", "unixReviewTime": NaN}']
    with pytest.raises(SourceError, match=r"field 'unixReviewTime' is nan, not a finite number"):
        load("amazon2014", files_2014(tmp_path, reviews), 3, SkipLog(0.0))


def test_a_corrupt_local_file_is_not_to_be_deleted(tmp_path):
    files = files_2014(tmp_path)._replace(local=True)
    files.reviews.write_bytes(files.reviews.read_bytes()[:40])
    with pytest.raises(SourceError, match=r"replace it with a complete copy \(download\.local_dir"):
        load("amazon2014", files, 3, SkipLog(0.0))
    downloaded = files._replace(local=False)
    with pytest.raises(SourceError, match=r"delete it and rerun to download it again"):
        load("amazon2014", downloaded, 3, SkipLog(0.0))


def test_no_user_left_after_the_kcore_is_an_error_in_download(tmp_path):
    with pytest.raises(SourceError, match=r"reviews_Beauty_5\.json\.gz: no user is left"):
        load("amazon2014", files_2014(tmp_path), 10, SkipLog(0.0))


def test_locate_finds_local_files_and_names_a_missing_one(tmp_path):
    files = files_2014(tmp_path)
    assert locate("amazon2014", "Beauty", tmp_path, tmp_path / "raw") == files._replace(local=True)
    with pytest.raises(SourceError, match=r"Sports_and_Outdoors\.jsonl\.gz: no such file"):
        locate("amazon2023", "Sports_and_Outdoors", tmp_path, tmp_path / "raw")


def test_locate_downloads_from_the_public_urls_when_there_is_no_local_dir(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(
        "deepinterestgr.data_sources.amazon.download", lambda url, dest: asked.append(url) or dest
    )
    files = locate("amazon2023", "All_Beauty", None, tmp_path)
    assert asked == [
        "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw/review_categories/All_Beauty.jsonl.gz",
        "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw/meta_categories/meta_All_Beauty.jsonl.gz",
    ]
    assert files.meta == tmp_path / "amazon2023" / "meta_All_Beauty.jsonl.gz"
    locate("amazon2014", "Beauty", None, tmp_path)
    assert asked[2:] == [
        "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Beauty_5.json.gz",
        "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_Beauty.json.gz",
    ]


BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon" / "beauty"


@pytest.mark.slow
@pytest.mark.skipif(not BEAUTY.is_dir(), reason="the Amazon Beauty benchmark is not present")
def test_amazon2014_rebuilds_the_beauty_benchmark_from_raw_files(tmp_path):
    """Raw files made from the benchmark, lines shuffled, give back the same 5-core sequences."""
    import random

    sequences = {}
    for line in (BEAUTY / "user_sequence.txt").read_text().splitlines():
        user, *items = line.split()
        sequences[user] = items
    reviews = [
        review_2014(user, item, 1_300_000_000 + 86_400 * k)
        for user, items in sequences.items()
        for k, item in enumerate(items)
    ]
    random.Random(0).shuffle(reviews)
    meta = [
        repr({k: v for k, v in json.loads(line).items() if v is not None})
        for line in (BEAUTY / "items.jsonl").read_text().splitlines()
    ]
    data = load("amazon2014", files_2014(tmp_path, reviews, meta), 5, SkipLog(0.0))
    stats = statistics(data)
    assert (stats["users"], stats["items"], stats["interactions"]) == (22_363, 12_101, 198_502)
    assert stats["filtered"] == {
        "duplicate_interactions": 0,
        "kcore_users": 0,
        "kcore_items": 0,
        "kcore_interactions": 0,
    }
    rebuilt = {u.source_id: [data.items[i].source_id for i in u.items] for u in data.users}
    assert rebuilt == sequences
