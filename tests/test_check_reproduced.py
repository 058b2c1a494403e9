"""scripts/check_reproduced.py: model figures must match exactly, machine figures never count."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "check_reproduced", ROOT / "scripts" / "check_reproduced.py"
)
check_reproduced = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_reproduced)


def test_wall_clock_and_cache_counters_are_not_differences():
    committed = {
        "hr@10": 0.5,
        "wall_time_s": 3.0,
        "cached": 0,
        "encoded": 400,
        "curve": [{"epoch": 1, "seconds": 1.2, "minutes": 0.02}],
    }
    reproduced = {
        "hr@10": 0.5,
        "wall_time_s": 9.0,
        "cached": 400,
        "encoded": 0,
        "curve": [{"epoch": 1, "seconds": 4.0, "minutes": 0.07}],
    }
    assert (
        check_reproduced.value_differences(
            "metrics/x.json", json.dumps(committed), json.dumps(reproduced)
        )
        == []
    )


def test_a_last_bit_change_a_new_key_and_a_list_entry_are_differences():
    committed = {"test": {"hr@10": 0.5}, "curve": [{"loss": 1.0}]}
    reproduced = {"test": {"hr@10": 0.5000000000000001, "ndcg@10": 0.3}, "curve": [{"loss": 1.5}]}
    assert check_reproduced.value_differences(
        "metrics/x.json", json.dumps(committed), json.dumps(reproduced)
    ) == [
        "metrics/x.json: curve[0].loss = 1.5, committed 1.0",
        "metrics/x.json: test.hr@10 = 0.5000000000000001, committed 0.5",
        "metrics/x.json: test.ndcg@10 = 0.3, committed None",
    ]


def test_metrics_ranks_and_curves_are_compared_by_key_and_data_by_hash():
    compared = check_reproduced.metric_files()
    assert {"metrics/eval.json", "metrics/ranks.json", "metrics/curves/sft_validation.json"} <= set(
        compared
    )
    assert check_reproduced.compared_by_key("metrics/sft.json")
    assert not check_reproduced.compared_by_key("data/sft")
