"""Stages on degenerate inputs fail early with one line and leave their old outputs whole."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import yaml

from deepinterestgr.common.io import save_array, write_json
from deepinterestgr.testing.stage_inputs import stage_command, write_tiny_stage_folder

ROOT = Path(__file__).resolve().parents[1]


def run_stage(stage: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        stage_command(ROOT, stage),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        # As dvc.yaml runs stages: this checkout's library first, not an editable install's.
        env={
            "OMP_NUM_THREADS": "1",
            "PATH": "/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT / "src"),
        },
    )


def project(tmp_path: Path, **sections) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, changes in sections.items():
        params[name].update(changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_download_of_an_empty_benchmark_fails_and_keeps_the_old_output(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "user_sequence.txt").write_text("")
    (folder / "items.jsonl").write_text('{"asin": "A1", "title": "Lip oil"}\n')
    cwd = project(tmp_path, download={"source": "benchmark", "local_dir": "bench"})
    write_json(cwd / "data/download/items.jsonl", {"old": True})  # a previous run's output
    run = run_stage("download", cwd)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    expected = f"{folder.resolve()}/user_sequence.txt: no users (0 lines read; none skipped)"
    assert last == f"download: error: {expected}"
    assert "Traceback" not in run.stderr
    assert [p.name for p in (cwd / "data/download").iterdir()] == ["items.jsonl"]


def test_rqvae_with_a_codebook_too_small_fails_before_training(tmp_path):
    cwd = project(tmp_path, rqvae={"codebook_size": 2})
    save_array(cwd / "data/embed/embeddings.npy", np.ones((400, 8), dtype=np.float32))
    run = run_stage("rqvae", cwd)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "rqvae: error: rqvae.codebook_size=2 with num_levels=3 gives 8 code tuples for 400 items: "
        "at least 98.2% of them would collide, above rqvae.max_collision_rate=0.5 (the SIDs "
        "would be mostly suffix); raise codebook_size or num_levels"
    )
    assert not (cwd / "data/sids").exists() and not (cwd / "data/rqvae").exists()


def test_evaluate_without_any_model_folder_fails_and_writes_nothing(tmp_path, project_params):
    # Everything evaluate reads but a trained model.
    write_tiny_stage_folder(tmp_path, project_params, ROOT / "dvc.yaml")
    run = run_stage("evaluate", tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "evaluate: error: no model to evaluate: none of data/sft/model, data/grpo/model exists; "
        "run the sft stage (dvc repro sft) first"
    )
    assert not (tmp_path / "metrics/eval.json").exists()
