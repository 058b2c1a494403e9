"""README tables are generated from metrics files and `dvc exp show --json` output."""

from __future__ import annotations

import pytest

from deepinterestgr.reporting import (
    experiment_rows,
    markdown_table,
    replace_between_markers,
    rows_from_bench_summary,
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


def test_bench_summary_rows_name_folder_and_model_and_skip_missing_tests():
    summary = {
        "A": {"sft": {"steps": 3}, "beauty_test_sft": {"hr@10": 0.03}},
        "Ag": {"grpo": {"steps": 2}, "beauty_test_grpo": {"hr@10": 0.02}},
        "B": {"sft": {"steps": 3}},  # its test evaluation failed: no row
    }
    rows = rows_from_bench_summary("gpu", summary, "H100")
    assert [(r.run, r.ranker, r.metrics["hr@10"], r.note) for r in rows] == [
        ("gpu", "A sft", 0.03, "H100"),
        ("gpu", "Ag grpo", 0.02, "H100"),
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


def test_experiment_rows_take_named_experiments_only_and_skip_unevaluated():
    def revision(name, metrics):
        files = {"metrics/eval.json": {"data": metrics}} if metrics else {}
        return {"rev": "abc1234def", "name": name, "data": {"metrics": files}}

    exp_show = [
        revision("workspace", EVAL),
        {
            **revision("main", EVAL),
            "experiments": [
                {"name": "no-interests", "revs": [revision(None, {"sft": EVAL["sft"]})]},
                {"name": "queued", "revs": [revision(None, None)]},
                {
                    "name": "running",
                    "executor": {"state": "running"},
                    "revs": [revision(None, EVAL)],
                },
                {"name": "no-interests", "revs": [revision(None, EVAL)]},  # an older run
                {"name": "full", "revs": [revision(None, EVAL)]},
            ],
        },
    ]
    rows = experiment_rows(exp_show)
    assert [(r.run, r.ranker) for r in rows] == [
        ("no-interests", "sft"),
        ("full", "sft"),
        ("full", "grpo"),
    ]


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
