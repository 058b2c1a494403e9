"""Fail unless this workspace reproduced the committed default run exactly.

    python scripts/check_reproduced.py [BASE_REV]      # default: HEAD

Run after ``dvc repro`` on a clean clone (``.ci/run`` does). Two checks against ``BASE_REV``:

* every JSON file a stage writes under ``metrics/`` (metrics, per-user ranks, validation curves)
  holds the same values as the committed one, key by key, except figures of the machine rather
  than the model: wall-clock keys (seconds, runtimes, rates per second) and cache counters
  (how many encodings came from the local cache);
* every other stage output in ``dvc.lock`` has the committed hash (same data, same models).

Prints one line per difference and exits 1 if there is any, 0 with a one-line summary if not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from deepinterestgr.common.reporting import committed_text

ROOT = Path(__file__).resolve().parents[1]
# Metric keys that measure the machine, not the model: they differ on every run (wall clock) or
# with what the local caches already held.
MACHINE_STATE = re.compile(
    r"(wall_time|wall_s$|runtime|seconds|_per_s(econd)?$|^minutes$|cpu_time|^cached$|^encoded$)"
)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for index, inner in enumerate(value):
            out.update(flatten(inner, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def compared_by_key(path: str) -> bool:
    """Outputs read key by key: their bytes hold wall-clock figures, their values must match."""
    return path.startswith("metrics/") and path.endswith(".json")


def metric_files() -> list[str]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    files = set()
    for stage in stages.values():
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                paths = entry if isinstance(entry, dict) else [entry]
                files.update(path for path in paths if compared_by_key(path))
    return sorted(files)


def metric_differences(rev: str) -> list[str]:
    differences = []
    for path in metric_files():
        before = committed_text(ROOT, rev, path)
        if before is None:
            differences.append(f"{path}: not committed at {rev}")
            continue
        if not (ROOT / path).exists():
            differences.append(f"{path}: not written by this run")
            continue
        differences.extend(value_differences(path, before, (ROOT / path).read_text()))
    return differences


def value_differences(path: str, committed_text: str, reproduced_text: str) -> list[str]:
    """One line per key whose value differs, machine figures aside."""
    old, new = flatten(json.loads(committed_text)), flatten(json.loads(reproduced_text))
    return [
        f"{path}: {key} = {new.get(key)!r}, committed {old.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if not MACHINE_STATE.search(key.split(".")[-1].split("[")[0])
        and old.get(key) != new.get(key)
    ]


def output_hashes(lock_text: str) -> dict[str, str]:
    lock = yaml.safe_load(lock_text) or {}
    return {
        f"{stage}:{out['path']}": out.get("md5", "")
        for stage, entry in lock.get("stages", {}).items()
        for out in entry.get("outs", [])
        if not compared_by_key(out["path"])
    }


def lock_differences(rev: str) -> list[str]:
    before = committed_text(ROOT, rev, "dvc.lock")
    if before is None:
        return [f"dvc.lock: not committed at {rev}"]
    old, new = output_hashes(before), output_hashes((ROOT / "dvc.lock").read_text())
    return [
        f"dvc.lock: {key} hash {new.get(key)}, committed {old.get(key)}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", nargs="?", default="HEAD")
    args = parser.parse_args()
    differences = metric_differences(args.rev) + lock_differences(args.rev)
    for line in differences:
        print(line)
    if differences:
        print(f"not reproduced: {len(differences)} difference(s) from {args.rev}")
        sys.exit(1)
    print(
        f"reproduced: every committed metric and output hash of {args.rev} (machine figures aside)"
    )


if __name__ == "__main__":
    main()
