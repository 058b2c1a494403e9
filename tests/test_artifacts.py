"""dvc.yaml names every path once: stage commands carry each stage's typed file contract, and
what a contract reads and writes is what DVC knows as the stage's deps and outs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from deepinterestgr.common.artifacts import (
    KEEPS,
    READS,
    STAGE_FILES,
    WRITES,
    ArtifactFolder,
    RecommenderFiles,
    SemanticIdFiles,
    declared_files,
    field_roles,
    parse_stage_files,
    stage_arguments,
)

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def roles(contract: object) -> dict[str, list[Path]]:
    """The contract's paths by role: ``{"reads": [...], "writes": [...], "keeps": [...]}``."""
    found: dict[str, list[Path]] = {READS: [], WRITES: [], KEEPS: []}
    for name, (_, role) in field_roles(type(contract)).items():
        value = getattr(contract, name)
        found[role.role].append(value.folder if isinstance(value, ArtifactFolder) else value)
    return found


def declared_paths(stage: dict, kinds: tuple[str, ...]) -> list[str]:
    """Paths of a dvc.yaml stage's ``kinds`` entries (``deps``, ``outs``, ...), comments aside."""
    found = []
    for kind in kinds:
        for entry in stage.get(kind, []):
            found.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return found


def covered(path: Path, declared: list[str]) -> bool:
    """``path`` is declared, lies inside a declared folder, or holds declared files."""
    text = str(path)
    return any(text == d or text.startswith(d + "/") or d.startswith(text + "/") for d in declared)


def test_every_stage_has_a_contract_and_its_command_fills_it():
    assert set(STAGE_FILES) == set(STAGES)
    for name in STAGES:
        files = declared_files(name, ROOT / "dvc.yaml")
        assert isinstance(files, STAGE_FILES[name]), name


@pytest.mark.parametrize("stage", sorted(STAGE_FILES))
def test_what_a_stage_reads_and_writes_is_what_dvc_knows(stage):
    files = declared_files(stage, ROOT / "dvc.yaml")
    paths = roles(files)
    deps = declared_paths(STAGES[stage], ("deps",))
    outs = declared_paths(STAGES[stage], ("outs", "metrics", "plots"))
    for path in paths[READS]:
        assert covered(path, deps), f"{stage} reads {path}, not among its deps"
    for path in paths[WRITES]:
        assert covered(path, outs), f"{stage} writes {path}, not among its outs"
    for path in paths[KEEPS]:  # a cache is never a dependency: a warm one must not rerun stages
        assert not covered(path, deps), f"{stage} depends on its cache {path}"


def test_stages_downstream_read_the_sid_artefact_not_the_stage_that_made_it():
    producer = declared_files("rqvae", ROOT / "dvc.yaml")
    for name in ("sft", "grpo", "evaluate"):
        assert declared_files(name, ROOT / "dvc.yaml").sids == producer.sids
        deps = declared_paths(STAGES[name], ("deps",))
        assert not covered(producer.rqvae.folder, deps), f"{name} depends on the RQ-VAE itself"


def string_constants(path: Path) -> list[str]:
    """Every string literal of a script except docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


@pytest.mark.parametrize("stage", sorted(STAGE_FILES))
def test_stage_scripts_name_no_path_of_their_own(stage):
    roots = ("data/", "metrics/", "plots/", "dvclive/")
    named = [s for s in string_constants(ROOT / f"stages/{stage}.py") if s.startswith(roots)]
    assert not named, f"stages/{stage}.py names {named}: paths belong in dvc.yaml"


def test_a_contract_is_built_from_arguments_with_file_names_fixed_by_type():
    files = parse_stage_files(
        "grpo",
        [
            *("--dataset", "d", "--sids", "s", "--labelled", "l", "--interests", "i"),
            *("--sft", "a/sft", "--recommender", "a/grpo", "--live", "v", "--metrics", "m.json"),
        ],
    )
    assert files.sids == SemanticIdFiles(Path("s"))
    assert files.sids.codes == Path("s/codes.npy")
    assert files.labelled.quality == Path("l/quality.npy")
    assert files.sft.model == Path("a/sft/model")
    assert files.recommender == RecommenderFiles(Path("a/grpo"))
    assert files.metrics == Path("m.json")
    assert roles(files)[READS] == [Path(p) for p in ("d", "s", "l", "i", "a/sft")]


def test_a_missing_argument_fails_before_the_stage_runs_and_names_the_option(capsys):
    arguments = stage_arguments("rqvae", ROOT / "dvc.yaml")
    without_sids = (
        arguments[: arguments.index("--sids")] + arguments[arguments.index("--sids") + 2 :]
    )
    with pytest.raises(SystemExit) as exit_info:
        parse_stage_files("rqvae", without_sids)
    assert exit_info.value.code == 2
    assert "--sids" in capsys.readouterr().err


def test_stage_arguments_are_the_words_after_the_script():
    assert stage_arguments("params", ROOT / "dvc.yaml") == ["--checked", "data/params/checked.txt"]
