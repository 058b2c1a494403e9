"""End to end: ``dvc repro`` of the built-in default in a temporary copy of the project.

This is what a new user does after the README's first command: the whole pipeline runs on the
synthetic default, writes every metrics file, and a second ``dvc repro`` reruns nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _project_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore: what a clean clone would hold."""
    listing = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [p for p in listing.split("\0") if p and (ROOT / p).is_file()]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # Stage commands call plain `python`: the one of this environment, as after activation.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


@pytest.mark.slow
def test_dvc_repro_runs_the_default_pipeline_and_a_second_run_reruns_nothing(tmp_path):
    project = tmp_path / "project"
    for relative in _project_files():
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    # Start from nothing: the copy must rebuild every output itself. A smaller default (fewer
    # users and epochs) keeps this a test of the pipeline's wiring; .ci/run reproduces the real one.
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["download"]["synthetic"]["num_users"] = 1000
    params["baselines"]["sasrec"]["max_epochs"] = 3
    params["sft"]["trainer"]["num_train_epochs"] = 2
    params["sft"]["selection"]["users"] = 200
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    (project / "dvc.lock").unlink(missing_ok=True)
    shutil.rmtree(project / "metrics", ignore_errors=True)
    _run(["git", "init", "-q"], project)
    _run(["git", "add", "-A"], project)
    _run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "copy"],
        project,
    )
    dvc = [sys.executable, "-m", "dvc"]

    _run([*dvc, "repro"], project)

    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for entry in stage.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            assert json.loads((project / path).read_text()), f"{name} wrote an empty {path}"
    evaluation = json.loads((project / "metrics" / "eval.json").read_text())
    assert evaluation, "evaluate wrote no metrics"

    second = _run([*dvc, "repro"], project)
    assert "Running stage" not in second.stdout, second.stdout
    status = _run([*dvc, "status"], project)
    assert "up to date" in status.stdout, status.stdout

    # A bad override fails in the params stage, before DVC deletes any other stage's outputs.
    def metrics_files() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in (project / "metrics").rglob("*") if p.is_file()}

    before = metrics_files()
    bad = subprocess.run(
        [*dvc, "exp", "run", "-S", "evaluate.num_beams=10"],
        cwd=project,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "params.yaml:evaluate.num_beams: 10 is below max(evaluate.ks) = 20" in (
        bad.stdout + bad.stderr
    )
    assert "Running stage 'evaluate'" not in bad.stdout
    assert metrics_files() == before
    assert (project / "data" / "sft" / "model").is_dir()
