"""Regenerate the README's results table from the runs on record, as committed.

    python scripts/render_results.py [--rev HEAD]

A recorded run is a folder ``results/<run>/`` (``scripts/record_experiment.sh``) holding the
run's ``params.yaml``, its ``metrics/*.json``, ``commands.sh`` (the exact command) and
optionally ``note.txt``. Only what is committed at ``--rev`` is read: a local experiment, or a
record not yet committed, never reaches the README. Peers (``metrics/peers.json``: other
libraries' models on the same split and protocol) follow the run's own rankers, and their note
says they are peers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from deepinterestgr.common.reporting import (
    ResultRow,
    committed_text,
    markdown_table,
    replace_between_markers,
    rows_from_metrics,
    rows_from_peers,
)

ROOT = Path(__file__).resolve().parents[1]


def recorded_rows(rev: str) -> list[ResultRow]:
    listed = subprocess.run(
        ["git", "ls-tree", "-d", "--name-only", f"{rev}:results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rows: list[ResultRow] = []
    for run in sorted(listed):
        folder = f"results/{run}"
        note = (committed_text(ROOT, rev, f"{folder}/note.txt") or "").strip()
        evaluation = committed_text(ROOT, rev, f"{folder}/metrics/eval.json")
        baselines = committed_text(ROOT, rev, f"{folder}/metrics/baselines.json")
        peers = committed_text(ROOT, rev, f"{folder}/metrics/peers.json")
        rows.extend(
            rows_from_metrics(
                run,
                json.loads(evaluation) if evaluation else {},
                json.loads(baselines) if baselines else None,
                note,
            )
        )
        if peers:  # other libraries' models, after ours, on the same protocol
            rows.extend(rows_from_peers(run, json.loads(peers), note))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the commit whose records are rendered")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    text = args.readme.read_text()
    table = markdown_table(recorded_rows(args.rev))
    args.readme.write_text(replace_between_markers(text, "results", table))


if __name__ == "__main__":
    main()
