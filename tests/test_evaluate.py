"""Evaluation of a generative recommender: hand-worked metrics, decoding checks, the stage."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from deepinterestgr.common.io import UserSequence
from deepinterestgr.common.params import EvaluateParams
from deepinterestgr.evaluation.generative import (
    decoding_checks,
    evaluate_recommender,
    hr_by_k_rows,
)
from deepinterestgr.recommender.constrained_decoding import BeamResult
from deepinterestgr.recommender.generative_model import Recommender
from deepinterestgr.recommender.prompt import PromptSpec
from deepinterestgr.recommender.sid_tokenizer import build_tokenizer
from deepinterestgr.testing.stage_inputs import stage_command, write_tiny_stage_folder

ROOT = Path(__file__).resolve().parents[1]

# Four items, SIDs <a_x><b_y><c_0>: item0 = (0, 0), item1 = (0, 1), item2 = (1, 0), item3 = (1, 1).
CODES = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=np.int64)


class BigramLM(nn.Module):
    """A hand-built ranker: the next-token distribution depends on the last token only."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(log_probs)

    def forward(self, input_ids, cache=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids], cache=cache)


def hand_built_recommender() -> Recommender:
    tokenizer = build_tokenizer([2, 2, 1], [], max_words=0, min_count=1)
    vocab = tokenizer.get_vocab()
    a0, a1, b0, b1, c0 = (vocab[t] for t in ("<a_0>", "<a_1>", "<b_0>", "<b_1>", "<c_0>"))
    table = torch.full((len(tokenizer), len(tokenizer)), -1e4)
    # After a prompt (which ends in a suffix token or the task token): p(a_0) .6, p(a_1) .4;
    # after a_0: p(b_0) .7, p(b_1) .3; after a_1: p(b_0) .6, p(b_1) .4; after b_*: c_0.
    # Item scores: item0 .42, item2 .24, item1 .18, item3 .16.
    for previous in (c0, vocab["<task_history>"]):
        table[previous, a0], table[previous, a1] = math.log(0.6), math.log(0.4)
    table[a0, b0], table[a0, b1] = math.log(0.7), math.log(0.3)
    table[a1, b0], table[a1, b1] = math.log(0.6), math.log(0.4)
    table[b0, c0] = table[b1, c0] = 0.0
    return Recommender(BigramLM(table), tokenizer, PromptSpec("history", 5, 8))


# Test targets (last item): user 0 -> item0 (rank 0), user 1 -> item1 (rank 2; rank 1 once
# its history item0 is excluded), user 2 -> item3 (rank 3; 1 once item2 and item1 are excluded).
USERS = [
    UserSequence(0, "u0", (1, 3, 0)),
    UserSequence(1, "u1", (0, 0, 1)),
    UserSequence(2, "u2", (2, 1, 3)),
]


def test_metrics_of_a_hand_built_ranker():
    recommender = hand_built_recommender()
    protocol = EvaluateParams(ks=(1, 3), exclude_history=False, num_beams=4, batch_size=2)
    full = evaluate_recommender(recommender, CODES, USERS, "test", protocol)
    assert full.result.ranks.tolist() == [0, 2, -1]  # rank 3 is outside the top max(ks)
    assert full.result.metrics == pytest.approx(
        {"hr@1": 1 / 3, "ndcg@1": 1 / 3, "hr@3": 2 / 3, "ndcg@3": (1 + 0.5) / 3}
    )
    assert full.checks._asdict() == {"invalid": 0, "duplicates": 0, "missing": 0}

    unseen_protocol = dataclasses.replace(protocol, exclude_history=True)
    unseen = evaluate_recommender(recommender, CODES, USERS, "test", unseen_protocol)
    assert unseen.result.ranks.tolist() == [0, 1, 1]
    assert unseen.result.metrics["ndcg@3"] == pytest.approx((1 + 2 / math.log2(3)) / 3)
    # Each user has 4 - |distinct history| unseen items left for 4 beams.
    assert unseen.checks.missing == 2 + 1 + 2
    assert unseen.to_dict()["exclude_history"] is True


def test_decoding_checks_count_invalid_duplicate_and_missing_beams():
    sid_ids = np.array([[1, 2], [1, 3]])
    beams = BeamResult(
        item_ids=torch.tensor([[0, 0, -1], [1, 0, 1]]),
        scores=torch.zeros(2, 3),
        token_ids=torch.tensor([[[1, 2], [1, 2], [-1, -1]], [[1, 3], [9, 9], [1, 3]]]),
    )
    assert decoding_checks(beams, sid_ids)._asdict() == {
        "invalid": 1,
        "duplicates": 2,
        "missing": 1,
    }


def test_hr_by_k_rows():
    metrics = {"hr@1": 0.1, "ndcg@1": 0.1, "hr@5": 0.3, "ndcg@5": 0.2}
    assert hr_by_k_rows(metrics, (1, 5)) == [
        {"k": 1, "hr": 0.1, "ndcg": 0.1},
        {"k": 5, "hr": 0.3, "ndcg": 0.2},
    ]


@pytest.mark.slow
def test_sft_and_evaluate_stages_end_to_end(tmp_path, project_params):
    """The two stages on a tiny synthetic catalogue, from their own working folder."""
    write_tiny_stage_folder(tmp_path, project_params, ROOT / "dvc.yaml")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for stage in ("sft", "evaluate"):
        subprocess.run(stage_command(ROOT, stage), cwd=tmp_path, env=env, check=True)

    report = json.loads((tmp_path / "metrics/eval.json").read_text())
    assert set(report) == {"exclude_history", "num_beams", "sft", "popularity"}
    assert report["sft"]["test"]["invalid"] == report["sft"]["test"]["duplicates"] == 0
    assert 0.0 <= report["sft"]["test"]["hr@1"] <= 1.0
    assert json.loads((tmp_path / "plots/evaluate/hr_at_k/popularity.json").read_text()) == [
        {"k": 1, "hr": 0.2, "ndcg": 0.2}
    ]
    assert (tmp_path / "data/sft/model/recommender.json").exists()
    assert not (tmp_path / "data/sft/checkpoints").exists()
    assert json.loads((tmp_path / "metrics/sft.json").read_text())["steps"] > 0
