"""The params loader is strict, and dvc.yaml, params.yaml and the dataclasses agree."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deepinterestgr.common.config import ConfigError, build
from deepinterestgr.common.params import SECTIONS, VALIDATORS, load, load_all

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
        # src/ first: a queued experiment's copy imports its own library, not the workspace's
        assert stage["cmd"].startswith(f"PYTHONPATH=src python stages/{name}.py "), name
        assert f"stages/{name}.py" in stage["deps"], f"stage {name} must depend on its script"
        for dep in stage["deps"]:
            assert (ROOT / dep).exists() or dep.startswith("data/"), f"{name}: missing dep {dep}"
        for entry in stage.get("params", []):
            section = entry.split(".")[0] if isinstance(entry, str) else None
            assert section in SECTIONS, f"stage {name} declares unknown params '{entry}'"
        assert "base" in stage.get("params", []), f"stage {name} must declare the base section"


def library_imports(path: Path) -> set[str]:
    """Modules of deepinterestgr that ``path`` imports, directly or through each other."""
    found: set[str] = set()
    pending = [path]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if not name.startswith("deepinterestgr") or name in found:
                    continue
                file = ROOT / "src" / Path(*name.split("."))
                for candidate in (file.with_suffix(".py"), file / "__init__.py"):
                    if candidate.exists():
                        found.add(name)
                        pending.append(candidate)
    return found


def test_every_stage_depends_on_every_library_module_it_imports():
    """DVC reruns a stage only for what it declares: a module imported (even through another
    module) but missing from deps would leave the stage's outputs stale after a change."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        needed = {
            str((ROOT / "src" / Path(*module.split("."))).with_suffix(".py").relative_to(ROOT))
            for module in library_imports(ROOT / f"stages/{name}.py")
            if (ROOT / "src" / Path(*module.split("."))).with_suffix(".py").exists()
        }
        missing = sorted(needed - set(stage["deps"]))
        assert not missing, f"stage {name} imports but does not depend on {missing}"
        # and nothing more: a module it does not import must not rerun it (nor cost a cache hit)
        extra = sorted({d for d in stage["deps"] if d.startswith("src/")} - needed)
        assert not extra, f"stage {name} depends on {extra} but does not import them"


@pytest.mark.parametrize("rate", [".nan", ".inf", "1e400", float("nan"), 10**400])
def test_numbers_must_be_finite(rate):
    value = yaml.safe_load(f"v: {rate}")["v"] if isinstance(rate, str) else rate  # as YAML reads
    data = {"steps": 3, "ks": [1], "inner": {"rate": value, "name": None}}
    with pytest.raises(ConfigError, match=r"x\.inner\.rate: expected a finite number"):
        build(Outer, data, "x")


def _params_with(tmp_path: Path, section: str, **changes) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        node = params[section]
        *parents, key = dotted.split("__")
        for parent in parents:
            node = node[parent]
        node[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize(
    ("section", "changes", "message"),
    [
        (
            "evaluate",
            {"num_beams": 10},
            "params.yaml:evaluate.num_beams: 10 is below max(evaluate.ks) = 20",
        ),
        ("evaluate", {"ks": []}, "params.yaml:evaluate.ks: empty"),
        ("evaluate", {"ks": [5, 5]}, "params.yaml:evaluate.ks[1]: 5 is listed twice"),
        ("mine", {"backends": ["offline", "gpt5"]}, "mine.backends[1]: unknown backend 'gpt5'"),
        ("mine", {"llms__claude__concurrency": 0}, "mine.llms.claude.concurrency: 0 is below"),
        ("rqvae", {"codebook_size": 1}, "rqvae.codebook_size: 1 is below the minimum 2"),
        ("rqvae", {"max_collision_rate": 1.5}, "rqvae.max_collision_rate: 1.5 is outside [0, 1]"),
        ("baselines", {"sasrec__num_heads": 3}, "sasrec.num_heads: 3 does not divide hidden_size"),
        ("baselines", {"sasrec__adam_beta2": 1.0}, "sasrec.adam_beta2: 1.0 is outside [0, 1)"),
        (
            "baselines",
            {"sasrec__loss": "sampled_softmax", "sasrec__num_negatives": 0},
            "sasrec.num_negatives: 0 is below 1, but loss is sampled_softmax",
        ),
        ("baselines", {"sasrec__warmup_steps": -1}, "sasrec.warmup_steps: -1 is below the minimum"),
        ("baselines", {"sasrec__positions": "left"}, "baselines.sasrec.positions"),
        ("download", {"synthetic__min_length": 2}, "download.synthetic.min_length: 2 is below"),
        ("download", {"max_skip_rate": -0.1}, "download.max_skip_rate: -0.1 is outside [0, 1]"),
        ("label", {"test_fraction": 1.0}, "label.test_fraction: 1.0 is outside (0, 1)"),
        (
            "label",
            {"llm_judge__backend": "gpt5"},
            "params.yaml:label.llm_judge.backend: unknown backend 'gpt5' (known: the names in "
            "mine.llms: claude, gpt, local)",
        ),
        (
            "label",
            {"llm_judge__max_failure_rate": 2.0},
            "params.yaml:label.llm_judge.max_failure_rate: 2.0 is outside [0, 1]",
        ),
        ("label", {"llm_judge__model": "x"}, "label.llm_judge: unknown key 'model'"),
        (
            "sft",
            {"backbone": "pretrained"},
            "sft.pretrained_path: null, but backbone is pretrained",
        ),
        (
            "grpo",
            {"trainer__num_generations": 1},
            "grpo.trainer.num_generations: 1 is below the minimum 2",
        ),
        (
            "grpo",
            {"trainer__max_steps": 0},
            "grpo.trainer.max_steps: 0 must be -1 (epochs decide) or positive",
        ),
        (
            "grpo",
            {"trainer__per_device_train_batch_size": 60},
            "grpo.trainer.per_device_train_batch_size: 60 is not a multiple of "
            "trainer.num_generations 8",
        ),
        ("grpo", {"trainer__learning_rate": "1e-4"}, "grpo.trainer.learning_rate: '1e-4' is not"),
        ("grpo", {"trainer__seed": 1}, "grpo.trainer.seed: set by the training code from base"),
        ("grpo", {"trainer": {"learning_rate": 1.0e-4}}, "grpo.trainer.num_generations: missing"),
        ("grpo", {"trainer__loss_type": "ppo"}, "grpo.trainer.loss_type: 'ppo' is not one of"),
        ("sft", {"trainer__report_to": "wandb"}, "sft.trainer.report_to: set by the training"),
    ],
)
def test_load_all_checks_ranges_and_cross_field_rules(tmp_path, section, changes, message):
    path = _params_with(tmp_path, section, **changes)
    with pytest.raises(ConfigError) as info:
        load_all(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_all_names_every_bad_key_of_a_section_in_one_line(tmp_path):
    path = _params_with(tmp_path, "evaluate", num_beams=0, batch_size=0)
    with pytest.raises(ConfigError) as info:
        load_all(path)
    assert str(info.value) == (
        "params.yaml:evaluate.num_beams: 0 is below max(evaluate.ks) = 20 (the beams are the "
        "ranked list); params.yaml:evaluate.batch_size: 0 is below the minimum 1"
    )


def test_the_project_params_pass_every_check():
    assert set(load_all(ROOT / "params.yaml")) == set(SECTIONS)
    assert set(VALIDATORS) == set(SECTIONS)


def test_the_params_stage_checks_every_section_before_any_other_stage():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages["params"]["params"]) == set(SECTIONS)
    outs = {
        name: [next(iter(o)) if isinstance(o, dict) else o for o in s.get("outs", [])]
        for name, s in stages.items()
    }
    metrics = {name: [next(iter(m)) for m in s.get("metrics", [])] for name, s in stages.items()}

    def upstream(name: str) -> set[str]:
        found = set()
        for dep in stages[name]["deps"]:
            for other in stages:
                produced = outs[other] + metrics[other]
                if other != name and any(dep == o or dep.startswith(o + "/") for o in produced):
                    found |= {other, *upstream(other)}
        return found

    for name in stages:
        if name != "params":
            assert "params" in upstream(name), f"stage {name} can run before the params check"
