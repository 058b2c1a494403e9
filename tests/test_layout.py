"""The library's groups depend on each other in one direction only: stages -> groups -> common.

The tree of ``src/deepinterestgr`` is the architecture; this keeps it true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "deepinterestgr"

# Which other groups each group may import. common imports nothing of ours; each stage's
# group sits on the ones it needs, never on a group that needs it.
ALLOWED = {
    "common": set(),
    "data_sources": {"common"},
    "llm": {"common"},
    "items": {"common"},
    "interests": {"common", "llm", "items"},
    "recommender": {"common", "items"},
    "evaluation": {"common", "items", "recommender"},
    "baselines": {"common", "evaluation"},
    "testing": {"common"},
}


def imported_groups(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "deepinterestgr":
                names = [f"deepinterestgr.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("deepinterestgr.")}
    return found


def test_every_group_is_listed_and_the_package_root_holds_no_module():
    groups = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert groups == set(ALLOWED)
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"]


@pytest.mark.parametrize("group", sorted(ALLOWED))
def test_a_group_imports_only_the_groups_below_it(group):
    for path in sorted((PACKAGE / group).rglob("*.py")):
        upward = imported_groups(path) - ALLOWED[group] - {group}
        assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}"
