"""Peers from the cornac library: bad params fail first, ids map back, evaluations agree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from deepinterestgr.baselines.peers import (
    CornacRanker,
    PeerError,
    build_peer,
    check_peers,
    cornac_evaluation,
    difference_intervals,
    fit_peer,
    largest_disagreement,
    leave_last_out,
)
from deepinterestgr.baselines.sasrec import SASRec, save_checkpoint
from deepinterestgr.common.io import Item, UserSequence, write_items, write_users
from deepinterestgr.common.params import load
from deepinterestgr.evaluation.metrics import NOT_RANKED, user_hits, user_ndcg
from deepinterestgr.evaluation.ranking import evaluate_ranker
from deepinterestgr.testing.stage_inputs import stage_command

ROOT = Path(__file__).resolve().parents[1]
TINY_SASREC = {"embedding_dim": 16, "max_len": 8, "n_sample": 32, "batch_size": 32, "n_epochs": 3}


def cycle_users(num_users: int, num_items: int, length: int) -> list[UserSequence]:
    """Every user walks the catalogue in order (i, i+1, ... mod N) from a random start."""
    starts = np.random.default_rng(0).integers(0, num_items, size=num_users)
    return [
        UserSequence(u, f"u{u}", tuple(int(s + t) % num_items for t in range(length)))
        for u, s in enumerate(starts)
    ]


def test_an_unknown_peer_fails_with_one_line_naming_the_param():
    with pytest.raises(PeerError) as error:
        check_peers(["sasrek"], {"sasrec": {}})
    message = str(error.value)
    assert message.startswith("params.yaml:peers.run: unknown peer 'sasrek' (known: sasrec,")
    assert "\n" not in message


def test_a_missing_dependency_names_the_install_command():
    def without_cornac(module):
        return None if module == "cornac" else object()

    with pytest.raises(
        PeerError, match=r"peer 'gru4rec' needs cornac.*pip install -e '\.\[peers\]'"
    ):
        check_peers(["gru4rec"], {"gru4rec": {}}, find_module=without_cornac)


def test_transformers_is_checked_for_tiger_only():
    def without_transformers(module):
        return None if module == "transformers" else object()

    check_peers(["sasrec"], {"sasrec": {}}, find_module=without_transformers)
    with pytest.raises(PeerError, match="peer 'tiger' needs transformers"):
        check_peers(["tiger"], {"tiger": {}}, find_module=without_transformers)


@pytest.mark.parametrize(
    ("run", "models", "message"),
    [
        (["sasrec"], {}, r"peers\.models\.sasrec: missing"),
        (["sasrec"], {"sasrec": {"hidden": 64}}, r"peers\.models\.sasrec\.hidden: not an argument"),
        (["tiger"], {"tiger": {"recipe": "fast"}}, r"peers\.models\.tiger\.recipe: unknown 'fast'"),
    ],
)
def test_bad_model_arguments_are_named(run, models, message):
    with pytest.raises(PeerError, match=message):
        check_peers(run, models)


def test_the_project_params_name_valid_arguments_for_every_peer():
    models = yaml.safe_load((ROOT / "params.yaml").read_text())["peers"]["models"]
    check_peers(["sasrec", "bert4rec", "gru4rec", "tiger"], models)


class FakeCornacModel:
    """Scores in cornac's item order; records the histories it was asked about."""

    def __init__(self, scores: np.ndarray) -> None:
        self.raw = scores
        self.asked: list[list[int]] = []

    def score(self, user_idx, history_items):
        self.asked.append(list(history_items))
        return self.raw


def test_cornac_ranker_maps_ids_both_ways_and_ranks_unknown_items_last():
    # cornac numbered our items 3, 0, 1 as 0, 1, 2; our item 2 never occurred.
    item_index = {"3": 0, "0": 1, "1": 2}
    model = FakeCornacModel(np.array([0.9, 0.2, 0.9]))  # our 3 -> .9, 0 -> .2, 1 -> .9
    ranker = CornacRanker(model, item_index, num_items=4)
    ranked = ranker.rank([[3, 0]], num=4)
    # Ties (.9) go to the lower id: 1 before 3; then 0; the unknown item 2 last.
    np.testing.assert_array_equal(ranked, [[1, 3, 0, 2]])
    assert model.asked == [[0, 1]]  # our history 3, 0 in cornac's ids
    np.testing.assert_array_equal(ranker.rank([[1]], num=2), [[1, 3]])


def test_difference_intervals_of_a_peer_that_hits_where_we_miss():
    # The peer ranks both targets first; we rank one first and miss the other, so the per-user
    # HR@10 differences are [0, 1]: resamples of two users average 0, 0.5 or 1 (p = 1/4, 1/2,
    # 1/4), and the central 95 % spans [0, 1].
    ours, peer = np.array([0, NOT_RANKED]), np.array([0, 0])
    intervals = difference_intervals(ours, peer, 10, resamples=20_000, confidence=0.95, seed=0)
    assert intervals["hr@10"]["difference"] == 0.5
    assert (intervals["hr@10"]["low"], intervals["hr@10"]["high"]) == (0.0, 1.0)
    assert intervals["ndcg@10"]["difference"] == 0.5


def test_largest_disagreement_is_the_worst_user():
    ours = {"hr@1": np.array([1.0, 0.0]), "ndcg@1": np.array([1.0, 0.0])}
    theirs = {"hr@1": np.array([1.0, 0.0]), "ndcg@1": np.array([0.75, 0.0])}
    assert largest_disagreement(ours, theirs) == 0.25


TINY = {
    "sasrec": TINY_SASREC,
    "bert4rec": TINY_SASREC,
    "gru4rec": {"layers": [16], "n_sample": 32, "batch_size": 32, "n_epochs": 3},
    # TIGER from a config (no published recipe): 2 x 4 codes, one T5 layer each side; beam
    # search scores 10 beams and leaves the rest tied at cornac's floor.
    "tiger": {
        "recipe": "default",
        "rqvae_hidden_dims": [32],
        "rqvae_latent_dim": 8,
        "rqvae_num_levels": 2,
        "rqvae_codebook_size": 4,
        "rqvae_n_epochs": 20,
        "d_model": 16,
        "d_ff": 32,
        "num_heads": 2,
        "d_kv": 8,
        "num_enc_layers": 1,
        "num_dec_layers": 1,
        "max_len": 8,
        "n_epochs": 2,
        "batch_size": 32,
        "n_beams": 10,
        "device": "cpu",
    },
}


@pytest.mark.parametrize(
    "name",
    [
        "sasrec",
        pytest.param("bert4rec", marks=pytest.mark.slow),
        pytest.param("gru4rec", marks=pytest.mark.slow),
        pytest.param("tiger", marks=pytest.mark.slow),
    ],
)
def test_a_peer_trains_on_our_split_and_both_evaluations_agree(name):
    """cornac trains on our split; its evaluation and ours (seen items kept) match per user."""
    torch.set_num_threads(1)
    users = cycle_users(num_users=120, num_items=30, length=8)
    features = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    check_peers([name], TINY)
    method = leave_last_out(users, seed=0, item_features=features if name == "tiger" else None)
    assert len(method.global_iid_map) == 30
    fit = fit_peer(build_peer(name, TINY[name], seed=0), method)
    assert fit.cpu_time_s > 0
    ks = (1, 5, 10)
    theirs = cornac_evaluation(fit.model, method, users, ks)
    ranker = CornacRanker(fit.model, method.global_iid_map, 30)
    ours = evaluate_ranker(ranker, users, "test", ks, exclude_history=False, batch_size=16)
    per_user = {
        f"{n}@{k}": f(ours.ranks, k)
        for k in ks
        for n, f in (("hr", user_hits), ("ndcg", user_ndcg))
    }
    assert largest_disagreement(per_user, theirs.per_user) <= 1e-9
    for key, value in theirs.metrics.items():
        assert ours.metrics[key] == pytest.approx(value, abs=1e-9)
    if name == "sasrec":
        assert theirs.metrics["hr@10"] > 0.5  # a cycle is easy; popularity would reach ~1/3


def write_peers_folder(folder: Path, run: list[str]) -> None:
    items = [Item(i, f"s{i}", f"item {i}") for i in range(30)]
    write_items(folder / "data/download/items.jsonl", items)
    write_users(folder / "data/download/users.jsonl", cycle_users(60, 30, 8))
    # The project's SASRec, shrunk: only the architecture matters for a saved checkpoint.
    config = replace(
        load("baselines", ROOT / "params.yaml").sasrec,
        hidden_size=16,
        num_blocks=1,
        num_heads=2,
        feedforward_size=32,
        max_len=8,
    )
    save_checkpoint(folder / "data/baselines/sasrec.pt", SASRec(30, config), config)
    project = yaml.safe_load((ROOT / "params.yaml").read_text())
    project["peers"]["run"] = run
    project["peers"]["models"]["sasrec"].update(TINY_SASREC, n_epochs=1, val_eval_every=1)
    project["peers"]["bootstrap"]["resamples"] = 50
    (folder / "params.yaml").write_text(yaml.safe_dump(project))


def run_stage(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        stage_command(ROOT, "peers"),
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_stage_with_no_peers_writes_an_empty_report(tmp_path):
    write_peers_folder(tmp_path, [])
    shutil.rmtree(tmp_path / "data")  # nothing is read when nothing runs
    assert run_stage(tmp_path).returncode == 0
    report = json.loads((tmp_path / "metrics/peers.json").read_text())
    assert report == {"exclude_history": True, "peers": {}}


def test_the_stage_rejects_an_unknown_peer_before_reading_anything(tmp_path):
    write_peers_folder(tmp_path, ["sasrec", "tigre"])
    shutil.rmtree(tmp_path / "data")
    result = run_stage(tmp_path)
    assert result.returncode != 0
    assert "params.yaml:peers.run: unknown peer 'tigre'" in result.stderr
    assert "FileNotFoundError" not in result.stderr


@pytest.mark.slow
def test_the_stage_reports_a_peer_beside_our_sasrec(tmp_path):
    write_peers_folder(tmp_path, ["sasrec"])
    assert run_stage(tmp_path).returncode == 0
    report = json.loads((tmp_path / "metrics/peers.json").read_text())
    peer = report["peers"]["sasrec"]
    assert set(peer) >= {"test", "test_exclude_history_false", "test_cornac_eval", "vs_sasrec"}
    assert peer["cornac_eval_max_user_difference"] <= 1e-9
    assert peer["test_exclude_history_false"]["hr@10"] == pytest.approx(
        peer["test_cornac_eval"]["hr@10"], abs=1e-9
    )
    interval = peer["vs_sasrec"]["exclude_history_false"]["ndcg@10"]
    assert interval["low"] <= interval["difference"] <= interval["high"]
    assert report["reference"]["sasrec"]["test"]["exclude_history"] is True
