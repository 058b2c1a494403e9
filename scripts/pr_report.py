"""The pull-request report: headline metrics against a base revision, with noise bands.

    python scripts/pr_report.py BASE_REV [--out report.md]

For every ranker of ``metrics/ranks.json`` (per-user test ranks, git-tracked), one row: HR@10
and NDCG@10 of the base and of this workspace, each with its 95 % noise band over users,
and the change with a paired-bootstrap 95 % interval (the same users in both runs). A change is
flagged only when its interval excludes zero; anything else is noise. Then the params that
changed (``dvc params diff``). Writes Markdown to ``--out`` or stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from deepinterestgr.common.reporting import committed_text
from deepinterestgr.evaluation.metrics import paired_bootstrap, user_hits, user_ndcg

ROOT = Path(__file__).resolve().parents[1]
RANKS = "metrics/ranks.json"
K = 10
RESAMPLES = 1000


def ranks_at(rev: str | None) -> dict[str, np.ndarray]:
    """Ranker -> per-user test ranks, from ``rev`` (None: the workspace)."""
    text = (ROOT / RANKS).read_text() if rev is None else committed_text(ROOT, rev, RANKS)
    if text is None:
        return {}
    return {name: np.asarray(r) for name, r in json.loads(text)["ranks"].items()}


def band(values: np.ndarray) -> str:
    """Mean over users and its 95 % noise band (1.96 standard errors), as ``0.1234 ±0.0056``."""
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ±{half:.4f}"


def rows(base: dict[str, np.ndarray], head: dict[str, np.ndarray]) -> list[str]:
    lines = [
        f"| ranker | HR@{K} base | HR@{K} now | ΔHR@{K} [95 %] | NDCG@{K} base | NDCG@{K} now "
        f"| ΔNDCG@{K} [95 %] |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in head:
        now = {"hr": user_hits(head[name], K).astype(float), "ndcg": user_ndcg(head[name], K)}
        if name not in base or base[name].shape != head[name].shape:
            cells = ["new", band(now["hr"]), "-", "new", band(now["ndcg"]), "-"]
        else:
            before = {
                "hr": user_hits(base[name], K).astype(float),
                "ndcg": user_ndcg(base[name], K),
            }
            cells = []
            for metric in ("hr", "ndcg"):
                change = paired_bootstrap(now[metric], before[metric], RESAMPLES, 0.95, 0)
                flag = " **changed**" if change.low > 0 or change.high < 0 else ""
                cells += [
                    band(before[metric]),
                    band(now[metric]),
                    f"{change.difference:+.4f} [{change.low:+.4f}, {change.high:+.4f}]{flag}",
                ]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return lines


def params_diff(base: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "params", "diff", base, "--md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return shown.stdout.strip() or "(no params changed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare with, e.g. origin/main")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args()
    out = io.StringIO()
    out.write(f"## DeepInterestGR: test metrics against `{args.base}`\n\n")
    head = ranks_at(None)
    base = ranks_at(args.base)
    if not base:
        out.write(f"(`{args.base}` has no {RANKS}: no paired comparison)\n\n")
    out.write("\n".join(rows(base, head)) + "\n\n")
    out.write("± : 95 % noise band over test users. Δ: paired bootstrap 95 % interval; only a Δ ")
    out.write("whose interval excludes 0 is flagged.\n\n### Params\n\n")
    out.write(params_diff(args.base) + "\n")
    if args.out:
        args.out.write_text(out.getvalue())
    else:
        sys.stdout.write(out.getvalue())


if __name__ == "__main__":
    main()
