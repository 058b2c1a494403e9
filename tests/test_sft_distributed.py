"""The ``sft`` stage unchanged under ``accelerate launch`` with two processes (gloo on CPUs)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deepinterestgr.testing.stage_inputs import stage_command, write_tiny_stage_folder

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_split_the_examples_and_only_the_main_one_writes(tmp_path, project_params):
    config = write_tiny_stage_folder(tmp_path, project_params, ROOT / "dvc.yaml", num_users=64)
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        *stage_command(ROOT, "sft")[1:],  # the script and its arguments
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(launch, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((tmp_path / "metrics/sft.json").read_text())
    trainer = config["sft"]["trainer"]
    per_process = math.ceil(metrics["train_examples"] / 2)
    expected_steps = trainer["num_train_epochs"] * math.ceil(
        per_process / trainer["per_device_train_batch_size"]
    )
    assert metrics["steps"] == expected_steps  # one process alone would take about twice as many
    assert (result.stdout + result.stderr).count("wrote data/sft/model") == 1
    assert (tmp_path / "data/sft/model/recommender.json").exists()
