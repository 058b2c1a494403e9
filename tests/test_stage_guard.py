"""Every stage checks all params first, locks its outputs, and reports errors in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from deepinterestgr.testing.stage_inputs import stage_command

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_a_bad_override_fails_in_one_line_before_the_stage_reads_or_writes(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"]["num_beams"] = 10  # dvc exp run -S evaluate.num_beams=10
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run(
        stage_command(ROOT, "evaluate"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr == (
        "evaluate: error: params.yaml:evaluate.num_beams: 10 is below max(evaluate.ks) = 20 "
        "(the beams are the ranked list)\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # nothing written


def test_pipeline_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path):
    hook = "from deepinterestgr.common.stage_guard import report_errors_in_one_line as r; r('x'); "
    bad_input = python(
        hook + "from deepinterestgr.common.io import DataFormatError; "
        "raise DataFormatError(\"items.jsonl:3: field 'price' is 'a'\")",
        tmp_path,
    )
    assert (bad_input.returncode, bad_input.stderr) == (
        1,
        "x: error: items.jsonl:3: field 'price' is 'a'\n",
    )
    missing = python(hook + "open('data/download/users.jsonl')", tmp_path)
    assert missing.stderr == "x: error: No such file or directory: data/download/users.jsonl\n"
    bug = python(hook + "1 / 0", tmp_path)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "ZeroDivisionError" in bug.stderr


HOLD = """
import sys, time
from deepinterestgr.common.stage_guard import lock_stage
lock_stage("mine", {locks!r})
print("locked", flush=True)
time.sleep(120)
"""
TRY = "from deepinterestgr.common.stage_guard import lock_stage; lock_stage('mine', {locks!r})"


def test_a_second_writer_is_refused_until_the_first_dies_even_by_sigkill(tmp_path):
    locks = str(tmp_path / "locks")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(locks=locks)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        refused = python(TRY.format(locks=locks), tmp_path)
        assert refused.returncode == 1
        assert f"mine.lock is held by process {holder.pid}, which is still writing" in (
            refused.stderr
        )
        other_stage = python(TRY.format(locks=locks).replace("'mine'", "'label'"), tmp_path)
        assert other_stage.returncode == 0
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # as an orphaned stage killed by hand
        holder.wait()
    assert python(TRY.format(locks=locks), tmp_path).returncode == 0  # no stale lock left
