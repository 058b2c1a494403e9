"""Fixtures shared by several test modules."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_params() -> dict[str, Any]:
    """The project's ``params.yaml`` as read, a fresh copy per test."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def sft_params():
    """``make(trainer, metric, patience, max_minutes, backbone)``: the project's ``sft`` params
    with the training settings a test needs (``trainer`` passes into ``trl.SFTConfig``)."""
    from deepinterestgr.common.params import SelectionParams, load

    project = load("sft", ROOT / "params.yaml")

    def make(
        trainer: dict[str, Any],
        metric: str = "loss",
        patience: int = 5,
        max_minutes: float = 10.0,
        backbone: str = "token",
    ):
        return dataclasses.replace(
            project,
            trainer=trainer,
            selection=SelectionParams(metric=metric, users=0, patience=patience),
            max_minutes=max_minutes,
            backbone=backbone,
        )

    return make
