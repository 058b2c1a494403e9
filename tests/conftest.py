"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_params() -> dict[str, Any]:
    """The project's ``params.yaml`` as read, a fresh copy per test."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())
