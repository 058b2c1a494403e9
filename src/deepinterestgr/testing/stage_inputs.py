"""A tiny working folder with everything the ``sft``, ``grpo`` and ``evaluate`` stages read."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

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


def write_tiny_stage_folder(
    folder: Path, params: dict[str, Any], num_users: int = 40
) -> dict[str, Any]:
    """24 items with 4-level SIDs, ``num_users`` users of 6 items, one interest per item, a
    popularity baseline, and ``params`` (the project's params.yaml, as read) shrunk to seconds.
    Returns the shrunk params, also written to ``folder/params.yaml``; ``params`` is not changed.
    """
    rng = np.random.default_rng(0)
    items = [Item(i, f"s{i}", f"item {i % 5}") for i in range(24)]
    users = [
        UserSequence(u, f"u{u}", tuple(rng.permutation(24)[:6].tolist())) for u in range(num_users)
    ]
    write_items(folder / "data/download/items.jsonl", items)
    write_users(folder / "data/download/users.jsonl", users)
    codes = np.array([[i // 8, (i // 2) % 4, i % 2, 0] for i in range(24)], dtype=np.int64)
    save_array(folder / "data/rqvae/codes.npy", codes)
    write_item_interests(
        folder / "data/label/items.jsonl",
        [ItemInterests(i, (Interest(f"interest {i % 3}", 0.9, positive=True),)) for i in range(24)],
    )
    write_user_interests(folder / "data/mine/users.jsonl", [])
    baselines = {"valid": {"hr@1": 0.1, "ndcg@1": 0.1}, "test": {"hr@1": 0.2, "ndcg@1": 0.2}}
    write_json(folder / "metrics/baselines.json", {"popularity": baselines})

    config = copy.deepcopy(params)
    config["sft"]["model_config"].update(hidden_size=16, num_hidden_layers=1, intermediate_size=32)
    config["sft"]["item_model"].update(hidden_size=16, num_hidden_layers=1, intermediate_size=32)
    config["sft"]["selection"].update(metric="ndcg@4", users=0)
    config["sft"]["trainer"].update(num_train_epochs=2, per_device_train_batch_size=16)
    config["evaluate"].update(ks=[1], num_beams=4, batch_size=16)
    (folder / "params.yaml").write_text(json.dumps(config))  # JSON is valid YAML
    return config
