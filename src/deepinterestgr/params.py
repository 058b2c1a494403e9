"""One frozen dataclass per ``params.yaml`` section (STYLE.md, convention 5).

Fields have no defaults on purpose: ``params.yaml`` is the single place a value is set, and
a key missing from it is an error naming the key (see :mod:`deepinterestgr.config`).
Each field's comment is its help line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepinterestgr.config import load_section

PARAMS_FILE = Path("params.yaml")


# --------------------------------------------------------------------------- base


@dataclass(frozen=True)
class BaseParams:
    seed: int  # the one seed every stage derives its randomness from


# --------------------------------------------------------------------------- download


@dataclass(frozen=True)
class SyntheticParams:
    num_users: int  # users generated
    num_items: int  # catalogue size
    num_interests: int  # latent interests (clusters of items users draw from)
    min_length: int  # shortest generated sequence (items)
    max_length: int  # longest generated sequence (items)
    habit_strength: float  # probability the next item follows the sequential habit
    image_size: int  # side in pixels of each generated item image


@dataclass(frozen=True)
class DownloadParams:
    source: Literal["synthetic", "amazon2014", "amazon2023", "benchmark"]  # which loader
    category: str  # Amazon category for amazon2014/amazon2023, e.g. "Beauty"
    local_dir: str | None  # read raw files from here instead of downloading
    kcore: int  # iterative k-core: every user and item keeps at least k interactions
    max_skip_rate: float  # share of malformed records skipped before the stage fails
    synthetic: SyntheticParams


# <dataclasses:baselines>

# <dataclasses:mine>

# <dataclasses:label>

# <dataclasses:embed>

# <dataclasses:rqvae>

# <dataclasses:sft>

# <dataclasses:grpo>

# --------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class EvaluateParams:
    ks: tuple[int, ...]  # cut-offs for HR@K and NDCG@K
    exclude_history: bool  # drop items already in the user's history from every ranking
    num_beams: int  # beams of the constrained beam search (= longest ranked list)
    batch_size: int  # users decoded together


# Section name -> dataclass; the contract test checks params.yaml and dvc.yaml against it.
SECTIONS: dict[str, type] = {
    "base": BaseParams,
    "download": DownloadParams,
    # <sections:baselines>
    # <sections:mine>
    # <sections:label>
    # <sections:embed>
    # <sections:rqvae>
    # <sections:sft>
    # <sections:grpo>
    "evaluate": EvaluateParams,
}


def load(section: str, path: str | Path = PARAMS_FILE) -> Any:
    """Load one section of ``params.yaml`` into its dataclass (strict; see config.py)."""
    if section not in SECTIONS:
        raise KeyError(f"no params section named '{section}' (known: {', '.join(SECTIONS)})")
    return load_section(path, section, SECTIONS[section])
