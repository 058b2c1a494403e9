"""The README's results table, generated from recorded runs, never typed by hand.

One row per ranker (baselines, SFT, GRPO, then peers) of each run recorded under
``results/<run>/`` (a DVC experiment's ``metrics/*.json``, ``params.yaml`` and ``commands.sh``,
see ``scripts/record_experiment.sh``). The table is written between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` markers, so a rerun of ``scripts/render_results.py`` is a no-op unless a
result changed and ``git diff`` shows it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The columns every table shows: the paper's headline cut-offs on the test split.
HEADLINE_METRICS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")
GENERATIVE_RANKERS = ("sft", "grpo")


def committed_text(repository: Path, rev: str, path: str) -> str | None:
    """The text of ``path`` as committed at ``rev``, or None if it is not committed there:
    reports read records and metrics from git, never from the workspace."""
    shown = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=repository, capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else None


@dataclass(frozen=True)
class ResultRow:
    run: str  # a recorded run or an experiment name
    ranker: str  # popularity, sasrec, sft, grpo
    metrics: Mapping[str, float]  # test metrics keyed "hr@10", "ndcg@10", ...
    note: str = ""


def rows_from_metrics(
    run: str, evaluation: Mapping[str, Any], baselines: Mapping[str, Any] | None, note: str = ""
) -> list[ResultRow]:
    """Rows for one run from ``metrics/eval.json`` and (optionally) ``metrics/baselines.json``.

    Both files hold ``{ranker: {"valid": {...}, "test": {...}}}``; only test metrics are shown.
    """
    rows = []
    for name, ranker in (baselines or {}).items():
        if isinstance(ranker, Mapping) and "test" in ranker:
            rows.append(ResultRow(run, name, ranker["test"], note))
    for name in GENERATIVE_RANKERS:
        ranker = evaluation.get(name)
        if isinstance(ranker, Mapping) and "test" in ranker:
            rows.append(ResultRow(run, name, ranker["test"], note))
    return rows


def rows_from_peers(run: str, peers: Mapping[str, Any], note: str = "") -> list[ResultRow]:
    """Rows for the peers of one run (``metrics/peers.json``), ranker ``"<peer> (cornac peer)"``.

    Their ``test`` metrics follow the run's ``exclude_history`` like every other row; the note
    says they are peers, so a reader never mistakes another library's model for ours.
    """
    rows = []
    for name, peer in (peers.get("peers") or {}).items():
        if isinstance(peer, Mapping) and "test" in peer:
            label = f"peer: cornac {name}" + (f"; {note}" if note else "")
            rows.append(ResultRow(run, f"{name} (cornac peer)", peer["test"], label))
    return rows


def markdown_table(rows: Sequence[ResultRow], metrics: Sequence[str] = HEADLINE_METRICS) -> str:
    """A Markdown table, one row per result, metrics to four decimals ('-' when absent)."""
    header = ["run", "ranker", *(m.upper() for m in metrics), "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [
            f"{row.metrics[m]:.4f}" if isinstance(row.metrics.get(m), (int, float)) else "-"
            for m in metrics
        ]
        lines.append("| " + " | ".join([row.run, row.ranker, *values, row.note]) + " |")
    return "\n".join(lines)


def replace_between_markers(text: str, name: str, body: str) -> str:
    """Replace what stands between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    pattern = re.compile(
        rf"(<!-- {re.escape(name)}:begin -->\n)(.*?)(<!-- {re.escape(name)}:end -->)", re.DOTALL
    )
    if not pattern.search(text):
        raise ValueError(f"markers <!-- {name}:begin --> / <!-- {name}:end --> not found")
    return pattern.sub(lambda m: f"{m.group(1)}{body.rstrip()}\n{m.group(3)}", text, count=1)
