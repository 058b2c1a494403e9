"""Regenerate the README's results tables from committed result files and DVC experiments.

    python scripts/render_results.py              # results on record (results/<run>/)
    python scripts/render_results.py --ablations  # also the ablation table (dvc exp show)

A recorded run is a folder ``results/<run>/`` holding the run's ``params.yaml``, its
``metrics/*.json`` and ``commands.sh`` (the exact commands), and optionally ``note.txt``.
Peers (``metrics/peers.json``: other libraries' models on the same split and protocol) follow
the run's own rankers, and their note says they are peers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from deepinterestgr.io import read_json
from deepinterestgr.reporting import (
    experiment_rows,
    markdown_table,
    replace_between_markers,
    rows_from_bench_summary,
    rows_from_metrics,
    rows_from_peers,
)

ROOT = Path(__file__).resolve().parents[1]


def recorded_rows(results: Path) -> list:
    rows = []
    for run in sorted(p for p in results.iterdir() if p.is_dir()):
        evaluation = run / "metrics" / "eval.json"
        baselines = run / "metrics" / "baselines.json"
        peers = run / "metrics" / "peers.json"
        note = (run / "note.txt").read_text().strip() if (run / "note.txt").exists() else ""
        if (run / "summary.json").exists():  # a bench run: work folders, not one pipeline
            rows.extend(rows_from_bench_summary(run.name, read_json(run / "summary.json"), note))
            continue
        rows.extend(
            rows_from_metrics(
                run.name,
                read_json(evaluation) if evaluation.exists() else {},
                read_json(baselines) if baselines.exists() else None,
                note,
            )
        )
        if peers.exists():  # other libraries' models, after ours, on the same protocol
            rows.extend(rows_from_peers(run.name, read_json(peers), note))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablations", action="store_true", help="also render dvc exp show")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()

    text = args.readme.read_text()
    text = replace_between_markers(text, "results", markdown_table(recorded_rows(ROOT / "results")))
    if args.ablations:
        shown = subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json", "-A"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        table = markdown_table(experiment_rows(json.loads(shown)))
        text = replace_between_markers(text, "ablations", table)
    args.readme.write_text(text)


if __name__ == "__main__":
    main()
