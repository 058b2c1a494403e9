"""A tiny working folder with everything the ``sft``, ``grpo`` and ``evaluate`` stages read,
and the command that runs a stage there as DVC would."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deepinterestgr.common.artifacts import declared_files, stage_arguments
from deepinterestgr.common.io import (
    Interest,
    Item,
    ItemInterests,
    UserSequence,
    save_array,
    write_item_interests,
    write_items,
    write_json,
    write_user_interests,
    write_users,
)


def stage_command(root: Path, stage: str) -> list[str]:
    """What DVC runs for ``stage`` of the project at ``root``: its script and the arguments
    ``dvc.yaml`` gives it (run it in a folder laid out as ``dvc.yaml`` says)."""
    arguments = stage_arguments(stage, root / "dvc.yaml")
    return [sys.executable, str(root / "stages" / f"{stage}.py"), *arguments]


def write_tiny_stage_folder(
    folder: Path, params: dict[str, Any], dvc_yaml: Path, num_users: int = 40
) -> dict[str, Any]:
    """24 items with 4-level SIDs, ``num_users`` users of 6 items, one interest per item, a
    popularity baseline, and ``params`` (the project's params.yaml, as read) shrunk to seconds,
    each where ``dvc_yaml`` has the stages read them. Returns the shrunk params, also written to
    ``folder/params.yaml``; ``params`` is not changed.
    """
    files = declared_files("evaluate", dvc_yaml)
    labelled = declared_files("sft", dvc_yaml).labelled
    rng = np.random.default_rng(0)
    items = [Item(i, f"s{i}", f"item {i % 5}") for i in range(24)]
    users = [
        UserSequence(u, f"u{u}", tuple(rng.permutation(24)[:6].tolist())) for u in range(num_users)
    ]
    write_items(folder / files.dataset.items, items)
    write_users(folder / files.dataset.users, users)
    codes = np.array([[i // 8, (i // 2) % 4, i % 2, 0] for i in range(24)], dtype=np.int64)
    save_array(folder / files.sids.codes, codes)
    write_item_interests(
        folder / labelled.items,
        [ItemInterests(i, (Interest(f"interest {i % 3}", 0.9, positive=True),)) for i in range(24)],
    )
    write_user_interests(folder / files.interests.users, [])
    baselines = {"valid": {"hr@1": 0.1, "ndcg@1": 0.1}, "test": {"hr@1": 0.2, "ndcg@1": 0.2}}
    write_json(folder / files.baseline_metrics, {"popularity": baselines})

    config = copy.deepcopy(params)
    config["sft"]["model_config"].update(hidden_size=16, num_hidden_layers=1, intermediate_size=32)
    config["sft"]["item_model"].update(hidden_size=16, num_hidden_layers=1, intermediate_size=32)
    config["sft"]["selection"].update(metric="ndcg@4", users=0)
    config["sft"]["trainer"].update(num_train_epochs=2, per_device_train_batch_size=16)
    config["evaluate"].update(ks=[1], num_beams=4, batch_size=16)
    (folder / "params.yaml").write_text(json.dumps(config))  # JSON is valid YAML
    return config
