"""The params loader is strict, and dvc.yaml, params.yaml and the dataclasses agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deepinterestgr.config import ConfigError, build
from deepinterestgr.params import SECTIONS, load

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    rate: float
    name: str | None


@dataclass(frozen=True)
class Outer:
    steps: int
    ks: tuple[int, ...]
    inner: Inner


def test_build_converts_nested_values_and_yaml_float_strings():
    outer = build(Outer, {"steps": 3, "ks": [1, 5], "inner": {"rate": "1e-4", "name": None}}, "x")
    assert outer == Outer(steps=3, ks=(1, 5), inner=Inner(rate=1e-4, name=None))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"steps": 3, "ks": [1], "inner": {"rate": 1, "name": "a", "typo": 1}},
            "x.inner: unknown key 'typo'",
        ),
        ({"steps": 3, "ks": [1], "inner": {"name": "a"}}, "x.inner.rate: missing key"),
        (
            {"steps": "3", "ks": [1], "inner": {"rate": 1, "name": "a"}},
            "x.steps: expected an integer",
        ),
        (
            {"steps": True, "ks": [1], "inner": {"rate": 1, "name": "a"}},
            "x.steps: expected an integer",
        ),
        (
            {"steps": 3, "ks": ["a"], "inner": {"rate": 1, "name": "a"}},
            "x.ks[0]: expected an integer",
        ),
    ],
)
def test_build_names_the_offending_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(Outer, data, "x")


def test_every_params_section_loads_into_its_dataclass():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params) == set(SECTIONS), "params.yaml sections and params.SECTIONS differ"
    for section in SECTIONS:
        load(section, ROOT / "params.yaml")


def test_every_stage_declares_existing_sections_and_its_own_files():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in pipeline["stages"].items():
        assert (
            stage["cmd"].split()[-1] == f"stages/{name}.py" or f"stages/{name}.py" in stage["cmd"]
        )
        assert f"stages/{name}.py" in stage["deps"], f"stage {name} must depend on its script"
        for dep in stage["deps"]:
            assert (ROOT / dep).exists() or dep.startswith("data/"), f"{name}: missing dep {dep}"
        for entry in stage.get("params", []):
            section = entry.split(".")[0] if isinstance(entry, str) else None
            assert section in SECTIONS, f"stage {name} declares unknown params '{entry}'"
        assert "base" in stage.get("params", []), f"stage {name} must declare the base section"
