"""Stage ``params``: check every section of params.yaml before any other stage runs.

DVC deletes a stage's outputs before it runs the stage, so a bad override caught only by the
stage that reads it (``stage_guard.begin``, which every stage also calls) would already have
cost that stage's previous outputs. This stage declares every params section and is upstream
of ``download``, hence of every stage, so DVC runs it first whenever any param changes: a bad
``dvc exp run -S ...`` fails here in about a second, with every other output as it was.

Reads:  params.yaml (all sections). Writes: ``--checked``, a constant line, so a
passing check never makes ``download`` (or anything after it) run again.
Params: every section.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("params")  # the check itself: every section loaded strictly and validated

from deepinterestgr.common import params
from deepinterestgr.common.artifacts import command_line_files
from deepinterestgr.common.io import atomic_path
from deepinterestgr.interests.mining import mining_problems

FILES = command_line_files("params")  # paths from the command in dvc.yaml


def main() -> None:
    # The rules only the llm and interests groups know (providers' needs, prompt versions).
    params.raise_problems("mine", mining_problems(params.load("mine")))
    with atomic_path(FILES.checked) as tmp:
        tmp.write_text("every section of params.yaml passed its checks\n", encoding="utf-8")


if __name__ == "__main__":
    main()
