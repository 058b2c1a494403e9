"""A compact table of this repository's DVC experiments: what changed, what it scored.

    python scripts/experiments.py [--k 10] [--all]

One row per finished experiment (``dvc exp show --json``; queued, running and failed ones are
left out; ``--all``: every commit's experiments, not only the current one's): its name, the
params on which the listed experiments differ from one another (with a single experiment: from
the commit it ran on), and test HR@K / NDCG@K of each ranker in ``metrics/eval.json``.
``dvc exp show --md`` prints every param and metric, hundreds of columns; this prints the few a
comparison needs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

RANKERS = ("popularity", "sasrec", "sft", "grpo")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def params_of(revision: Mapping[str, Any]) -> dict[str, Any]:
    files = ((revision.get("data") or {}).get("params") or {}).values()
    merged: dict[str, Any] = {}
    for entry in files:
        merged.update(flatten(entry.get("data") or {}))
    return merged


def experiments(shown: list[Mapping[str, Any]]) -> Iterator[tuple[str, dict, dict]]:
    """(name, params changed against its commit, eval metrics) per finished experiment."""
    for commit in shown:
        baseline = params_of(commit)
        for experiment in commit.get("experiments") or []:
            if (experiment.get("executor") or {}).get("state", "success") != "success":
                continue
            for revision in experiment.get("revs") or []:
                params = params_of(revision)
                changed = {k: v for k, v in params.items() if baseline.get(k) != v}
                metrics = ((revision.get("data") or {}).get("metrics") or {}).get(
                    "metrics/eval.json", {}
                )
                name = experiment.get("name") or revision.get("name") or revision.get("rev", "")
                yield name, changed, metrics.get("data") or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--all", action="store_true", help="experiments of every commit")
    args = parser.parse_args()
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["-A"] if args.all else [])
    shown = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    header = ["experiment", "changed params"]
    header += [f"{r} {m}@{args.k}" for r in RANKERS for m in ("HR", "NDCG")]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    found = list(experiments(shown))
    if len(found) > 1:  # only what tells the experiments apart
        keys = set().union(*(changed for _, changed, _ in found))
        varying = {k for k in keys if len({repr(c.get(k)) for _, c, _ in found}) > 1}
        found = [(n, {k: v for k, v in c.items() if k in varying}, m) for n, c, m in found]
    for name, changed, metrics in found:
        cells = [name, ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "-"]
        for ranker in RANKERS:
            test = (metrics.get(ranker) or {}).get("test") or {}
            for metric in ("hr", "ndcg"):
                value = test.get(f"{metric}@{args.k}")
                cells.append(f"{value:.4f}" if isinstance(value, (int, float)) else "-")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
