"""Where the pipeline's artefacts live: one typed contract per artefact and per stage.

``dvc.yaml`` is the only place that names a path. Each stage's command passes its inputs and
outputs as arguments (``python stages/sft.py --sids data/sids --recommender data/sft ...``),
which :func:`parse_stage_files` turns into that stage's contract (:data:`STAGE_FILES`). A
contract field is either an artefact folder type (:class:`DatasetFiles`,
:class:`SemanticIdFiles`, ...), which knows the file names inside the folder, or a plain
:class:`~pathlib.Path` (a metrics file, a plots folder, a cache).

So downstream stages name the artefact, never its producer: ``sft``, ``grpo`` and ``evaluate``
read ``--sids`` (a folder holding ``codes.npy``) whichever stage wrote it. Swapping the SID method
means pointing another stage's ``--sids`` output at that folder in ``dvc.yaml``; no stage changes.

Scripts and benchmarks outside the pipeline find the workspace's artefacts the same way:
:func:`declared_files` reads a stage's contract from ``dvc.yaml``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml

DVC_YAML = Path("dvc.yaml")
READS, WRITES, KEEPS = "reads", "writes", "keeps"


@dataclass(frozen=True)
class Role:
    """What a stage does with one path of its contract, and what the path holds."""

    role: str
    what: str


def reads(what: str) -> Role:
    """A path the stage only reads: a dependency in ``dvc.yaml``."""
    return Role(READS, what)


def writes(what: str) -> Role:
    """A path the stage writes: an output, metric or plot in ``dvc.yaml``."""
    return Role(WRITES, what)


def keeps(what: str) -> Role:
    """A cache the stage reads and adds to, kept across runs outside DVC's outputs (several
    stages may share one; content-addressed, so it cannot go stale)."""
    return Role(KEEPS, what)


def field_roles(contract: type) -> dict[str, tuple[type, Role]]:
    """Each field of a stage contract: its type and its :class:`Role`."""
    hints = typing.get_type_hints(contract, include_extras=True)
    found = {}
    for spec in dataclasses.fields(contract):
        kind, role = typing.get_args(hints[spec.name])
        found[spec.name] = (kind, role)
    return found


# --------------------------------------------------------------------------- artefact folders


def inside(name: str) -> property:
    """A file (or folder) of an artefact folder, by its fixed name."""
    return property(lambda self: self.folder / name, doc=f"``<folder>/{name}``")


@dataclass(frozen=True)
class ArtifactFolder:
    """A folder whose file names are fixed by its type; ``folder`` is where this copy lives
    (the stage's output path, or the temporary folder it writes before the swap)."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))


@dataclass(frozen=True)
class DatasetFiles(ArtifactFolder):
    """Written by ``download``: items (ids 0..N-1), leave-one-out users, item images."""

    items = inside("items.jsonl")
    users = inside("users.jsonl")


@dataclass(frozen=True)
class InterestFiles(ArtifactFolder):
    """Written by ``mine``: merged item and user interests, each backend's raw answers and the
    descriptors the injection screen rejected."""

    items = inside("items.jsonl")
    users = inside("users.jsonl")
    rejected = inside("rejected.jsonl")

    def raw(self, backend: str) -> Path:
        return self.folder / "raw" / f"{backend}.jsonl"


@dataclass(frozen=True)
class LabelledInterestFiles(ArtifactFolder):
    """Written by ``label``: item interests with their positive probability, each item's
    interest quality ``q_i`` (float32 ``[N]``) and the judged sample."""

    items = inside("items.jsonl")
    quality = inside("quality.npy")
    judged = inside("judged.jsonl")


@dataclass(frozen=True)
class EmbeddingFiles(ArtifactFolder):
    """Written by ``embed``: float32 ``[N, d]`` item vectors and the exact texts embedded."""

    vectors = inside("embeddings.npy")
    texts = inside("texts.jsonl")


@dataclass(frozen=True)
class SemanticIdFiles(ArtifactFolder):
    """Every item's Semantic ID: int64 ``[N, L+1]``, L codes then the collision suffix. What
    the generative recommender is trained and evaluated on, whichever method produced it."""

    codes = inside("codes.npy")


@dataclass(frozen=True)
class RqvaeFiles(ArtifactFolder):
    """Written by ``rqvae`` beside the SIDs: the trained quantizer's state dict."""

    model = inside("model.pt")


@dataclass(frozen=True)
class RecommenderFiles(ArtifactFolder):
    """Written by ``sft`` and ``grpo``: the model folder (weights, tokenizer, prompt spec) and,
    while training, the trainer's checkpoints."""

    model = inside("model")
    checkpoints = inside("checkpoints")


@dataclass(frozen=True)
class BaselineFiles(ArtifactFolder):
    """Written by ``baselines``: popularity counts, the best SASRec checkpoint and each
    ranker's per-user test ranks (what paired comparisons read)."""

    popularity = inside("popularity.npy")
    sasrec = inside("sasrec.pt")

    def test_ranks(self, ranker: str) -> Path:
        return self.folder / f"{ranker}_test_ranks.npy"


# --------------------------------------------------------------------------- stage contracts


@dataclass(frozen=True)
class ParamsStageFiles:
    checked: Annotated[Path, writes("a constant line: every params section passed")]


@dataclass(frozen=True)
class DownloadStageFiles:
    dataset: Annotated[DatasetFiles, writes("items, users and images of the configured source")]
    raw: Annotated[Path, keeps("downloaded source files, fetched once")]
    metrics: Annotated[Path, writes("data statistics (JSON)")]


@dataclass(frozen=True)
class BaselinesStageFiles:
    dataset: Annotated[DatasetFiles, reads("items and users")]
    baselines: Annotated[BaselineFiles, writes("popularity, SASRec checkpoint, ranks")]
    metrics: Annotated[Path, writes("valid and test metrics of each baseline (JSON)")]
    curve: Annotated[Path, writes("SASRec's validation metrics by epoch (JSON plot)")]


@dataclass(frozen=True)
class PeersStageFiles:
    dataset: Annotated[DatasetFiles, reads("items and users")]
    baselines: Annotated[BaselineFiles, reads("our SASRec checkpoint, evaluated beside the peers")]
    metrics: Annotated[Path, writes("metrics of every peer recommender (JSON)")]


@dataclass(frozen=True)
class MineStageFiles:
    dataset: Annotated[DatasetFiles, reads("items, users (training histories) and item images")]
    interests: Annotated[InterestFiles, writes("merged item and user interests, raw answers")]
    # A DVC output kept across runs (persist, never in DVC's cache): a rerun pays nothing twice.
    answer_cache: Annotated[Path, writes("every LLM answer, one file each")]
    metrics: Annotated[Path, writes("mining counts, cost and timings (JSON)")]


@dataclass(frozen=True)
class LabelStageFiles:
    dataset: Annotated[DatasetFiles, reads("items")]
    interests: Annotated[InterestFiles, reads("mined item interests")]
    labelled: Annotated[LabelledInterestFiles, writes("labelled interests, q_i, judged sample")]
    embedding_cache: Annotated[Path, keeps("sentence embeddings by text hash")]
    judge_cache: Annotated[Path, keeps("LLM judge answers")]
    metrics: Annotated[Path, writes("label counts and judge agreement (JSON)")]


@dataclass(frozen=True)
class EmbedStageFiles:
    dataset: Annotated[DatasetFiles, reads("items")]
    labelled: Annotated[LabelledInterestFiles, reads("labelled item interests")]
    embeddings: Annotated[EmbeddingFiles, writes("item vectors and the texts embedded")]
    embedding_cache: Annotated[Path, keeps("sentence embeddings by text hash")]
    metrics: Annotated[Path, writes("encoder, width and cache counts (JSON)")]


@dataclass(frozen=True)
class RqvaeStageFiles:
    embeddings: Annotated[EmbeddingFiles, reads("item vectors")]
    sids: Annotated[SemanticIdFiles, writes("every item's Semantic ID")]
    rqvae: Annotated[RqvaeFiles, writes("the trained RQ-VAE")]
    metrics: Annotated[Path, writes("collisions, code usage, reconstruction (JSON)")]
    plots: Annotated[Path, writes("losses, code usage and re-seeded codes by epoch (CSV plots)")]


@dataclass(frozen=True)
class SftStageFiles:
    dataset: Annotated[DatasetFiles, reads("items and users")]
    sids: Annotated[SemanticIdFiles, reads("every item's Semantic ID")]
    labelled: Annotated[LabelledInterestFiles, reads("labelled item interests (positive ones)")]
    interests: Annotated[InterestFiles, reads("user interests mined from training histories")]
    recommender: Annotated[RecommenderFiles, writes("the trained generative recommender")]
    live: Annotated[Path, writes("DVCLive training curves")]
    metrics: Annotated[Path, writes("selection metric, steps, timings (JSON)")]
    curve: Annotated[Path, writes("every validation ranking during training (JSON plot)")]


@dataclass(frozen=True)
class GrpoStageFiles:
    dataset: Annotated[DatasetFiles, reads("users")]
    sids: Annotated[SemanticIdFiles, reads("every item's Semantic ID")]
    labelled: Annotated[LabelledInterestFiles, reads("item interest quality q_i (reward)")]
    interests: Annotated[InterestFiles, reads("user interests, when the prompt uses them")]
    sft: Annotated[RecommenderFiles, reads("the SFT model GRPO starts from")]
    recommender: Annotated[RecommenderFiles, writes("the GRPO-trained generative recommender")]
    live: Annotated[Path, writes("DVCLive training curves")]
    metrics: Annotated[Path, writes("rewards, KL and timings (JSON)")]


@dataclass(frozen=True)
class EvaluateStageFiles:
    dataset: Annotated[DatasetFiles, reads("users")]
    sids: Annotated[SemanticIdFiles, reads("every item's Semantic ID")]
    interests: Annotated[InterestFiles, reads("user interests, when a model's prompt uses them")]
    sft: Annotated[RecommenderFiles, reads("the SFT model")]
    grpo: Annotated[RecommenderFiles, reads("the GRPO model (evaluated when it exists)")]
    baselines: Annotated[BaselineFiles, reads("the baselines' per-user test ranks")]
    baseline_metrics: Annotated[Path, reads("the baselines' metrics, shown beside the models")]
    metrics: Annotated[Path, writes("valid and test metrics of every ranker (JSON)")]
    ranks: Annotated[Path, writes("each test user's target rank per ranker (JSON)")]
    plots: Annotated[Path, writes("test HR@K and NDCG@K by K, one file per ranker")]


STAGE_FILES: dict[str, type] = {
    "params": ParamsStageFiles,
    "download": DownloadStageFiles,
    "baselines": BaselinesStageFiles,
    "peers": PeersStageFiles,
    "mine": MineStageFiles,
    "label": LabelStageFiles,
    "embed": EmbedStageFiles,
    "rqvae": RqvaeStageFiles,
    "sft": SftStageFiles,
    "grpo": GrpoStageFiles,
    "evaluate": EvaluateStageFiles,
}


def option(name: str) -> str:
    """The command-line option of a contract field: ``judge_cache`` -> ``--judge-cache``."""
    return "--" + name.replace("_", "-")


def parse_stage_files(stage: str, argv: Sequence[str]) -> Any:
    """``stage``'s contract from its command-line arguments; every field is required, so a
    command in ``dvc.yaml`` that forgets one fails before the stage reads anything."""
    contract = STAGE_FILES[stage]
    fields = field_roles(contract)
    parser = argparse.ArgumentParser(
        prog=f"stages/{stage}.py", description=f"Stage {stage}; paths come from dvc.yaml."
    )
    for name, (_, role) in fields.items():
        parser.add_argument(option(name), required=True, help=f"{role.role}: {role.what}")
    values = vars(parser.parse_args(list(argv)))
    return contract(**{name: fields[name][0](Path(value)) for name, value in values.items()})


def stage_arguments(stage: str, dvc_yaml: str | Path = DVC_YAML) -> list[str]:
    """The arguments ``dvc.yaml`` gives ``stages/<stage>.py`` (what DVC runs, minus the
    interpreter and script), for tests and tools that run a stage themselves."""
    command = yaml.safe_load(Path(dvc_yaml).read_text())["stages"][stage]["cmd"]
    words = shlex.split(command)
    script = words.index(f"stages/{stage}.py")
    return words[script + 1 :]


def declared_files(stage: str, dvc_yaml: str | Path = DVC_YAML) -> Any:
    """``stage``'s contract as ``dvc.yaml`` declares it: where the workspace keeps its files."""
    return parse_stage_files(stage, stage_arguments(stage, dvc_yaml))


def command_line_files(stage: str) -> Any:
    """The running stage's contract, from the arguments ``dvc.yaml`` gave its command."""
    return parse_stage_files(stage, sys.argv[1:])
