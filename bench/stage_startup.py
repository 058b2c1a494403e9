"""What each stage pays before its work: the time to start Python and import its modules.

Run from a workspace where ``dvc repro`` ran (the stages' inputs exist). For every stage of
``dvc.yaml``, in a fresh process each time, it times

* ``startup``: the script run through ``runpy`` under another name, with its ``dvc.yaml``
  arguments (interpreter start, the stage's imports, params check and file contract;
  ``main()`` not called);
* ``run``: ``python stages/<name>.py <arguments>`` (the whole stage, outputs rewritten as DVC
  would);

best of ``--repeat`` runs, and prints one JSON line per stage with the start-up share and the
top-level modules that take longest to import (``python -X importtime``).

    python bench/stage_startup.py [--repeat 2] [--stages download,sft] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

from deepinterestgr.common.artifacts import stage_arguments


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def loader(command: list[str]) -> str:
    """Python code that imports a stage script (its module level only: params check, contract,
    imports) with the arguments ``dvc.yaml`` gives it, without running its ``main``."""
    run = "runpy.run_path(sys.argv[0], run_name='startup')"
    return f"import runpy, sys; sys.argv = {command!r}; {run}"


def slowest_imports(command: list[str], count: int = 4) -> list[tuple[str, float]]:
    """Top-level packages by cumulative import time (seconds), from ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", loader(command)], capture_output=True, text=True
    )
    totals: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        if not cumulative.isdigit():
            continue
        if name == name.lstrip():  # a top-level import: its time includes everything below it
            totals[name.split(".")[0]] += int(cumulative) / 1e6
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--stages", help="comma-separated stage names (default: all)")
    parser.add_argument("--no-run", action="store_true", help="time start-up only")
    args = parser.parse_args()
    stages = list(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])
    if args.stages:
        stages = [s for s in stages if s in args.stages.split(",")]
    for stage in stages:
        command = [f"stages/{stage}.py", *stage_arguments(stage)]
        startup = min(timed([sys.executable, "-c", loader(command)]) for _ in range(args.repeat))
        row = {"stage": stage, "startup_s": round(startup, 2)}
        if not args.no_run:
            run = min(timed([sys.executable, *command]) for _ in range(args.repeat))
            row |= {"run_s": round(run, 2), "startup_share": round(startup / run, 2)}
        row["slowest_imports_s"] = {name: round(s, 2) for name, s in slowest_imports(command)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
