"""The pull-request workflow is a valid GitHub Actions workflow and runs the project's steps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "pr-metrics.yml"


def test_workflow_validates_against_the_github_workflow_schema():
    # check-jsonschema vendors the schema, so this runs offline.
    linter = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert linter, "check-jsonschema is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run(
        [linter, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_the_readme_test_command_then_repro_and_posts_the_diff():
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["reproduce"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    readme = (ROOT / "README.md").read_text()
    test_command = "bash scripts/setup.sh && source .venv/bin/activate && python -m pytest"
    assert test_command in readme and test_command in commands
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert "dvc repro" in commands
    assert "scripts/pr_report.py" in commands and "gh pr comment" in commands
    assert "scripts/check_reproduced.py" in commands
