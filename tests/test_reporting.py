"""The README results table is generated from recorded runs' metrics files."""

from __future__ import annotations

import pytest

from deepinterestgr.common.reporting import (
    markdown_table,
    replace_between_markers,
    rows_from_metrics,
    rows_from_peers,
)

EVAL = {
    "exclude_history": True,
    "sft": {"valid": {"hr@10": 0.5}, "test": {"hr@5": 0.25, "ndcg@5": 0.125, "hr@10": 0.5}},
    "grpo": {"valid": {}, "test": {"hr@5": 0.3, "ndcg@5": 0.2, "hr@10": 0.55, "ndcg@10": 0.25}},
}
BASELINES = {"exclude_history": True, "popularity": {"test": {"hr@10": 0.01}}}


def test_rows_take_test_metrics_of_baselines_then_generative_rankers():
    rows = rows_from_metrics("beauty", EVAL, BASELINES, "note")
    assert [(r.ranker, r.metrics.get("hr@10")) for r in rows] == [
        ("popularity", 0.01),
        ("sft", 0.5),
        ("grpo", 0.55),
    ]


def test_markdown_table_formats_four_decimals_and_dashes_missing_values():
    table = markdown_table(rows_from_metrics("run", {"sft": EVAL["sft"]}, None))
    assert table.splitlines() == [
        "| run | ranker | HR@5 | NDCG@5 | HR@10 | NDCG@10 | note |",
        "|---|---|---|---|---|---|---|",
        "| run | sft | 0.2500 | 0.1250 | 0.5000 | - |  |",
    ]


def test_replace_between_markers_is_idempotent_and_requires_the_markers():
    text = "a\n<!-- t:begin -->\nold\n<!-- t:end -->\nb\n"
    once = replace_between_markers(text, "t", "new")
    assert once == "a\n<!-- t:begin -->\nnew\n<!-- t:end -->\nb\n"
    assert replace_between_markers(once, "t", "new") == once
    with pytest.raises(ValueError, match="markers"):
        replace_between_markers("no markers", "t", "x")


def test_peer_rows_follow_the_run_protocol_and_say_they_are_peers():
    peers = {
        "exclude_history": True,
        "reference": {"sasrec": {"test": {"hr@10": 0.07}}},
        "peers": {"sasrec": {"test": {"hr@10": 0.06}, "test_cornac_eval": {"hr@10": 0.05}}},
    }
    rows = rows_from_peers("beauty-peers", peers, "one core")
    assert [(r.ranker, r.metrics["hr@10"], r.note) for r in rows] == [
        ("sasrec (cornac peer)", 0.06, "peer: cornac sasrec; one core")
    ]
    assert rows_from_peers("synthetic", {"exclude_history": True, "peers": {}}) == []
