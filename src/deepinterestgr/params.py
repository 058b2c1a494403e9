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
from deepinterestgr.offline_miner import OfflineSettings

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
    category: str  # Amazon file-name category: "Beauty" (amazon2014), "All_Beauty" (amazon2023)
    local_dir: str | None  # folder of the raw/benchmark files (relative: to the project root)
    kcore: int  # amazon*: iterative k-core, users and items keep >= k interactions (users >= 3)
    max_skip_rate: float  # share of malformed records (per reason) skipped before the stage fails
    synthetic: SyntheticParams


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class SASRecParams:
    hidden_size: int  # width of item/position embeddings and of every block
    num_blocks: int  # causal self-attention blocks
    num_heads: int  # attention heads per block (must divide hidden_size)
    feedforward_size: int  # inner width of each block's position-wise feed-forward layer
    dropout: float  # dropout on embeddings, attention weights and feed-forward outputs
    max_len: int  # most recent history items the model reads (older ones are cut)
    batch_size: int  # training sequences per optimisation step
    learning_rate: float  # Adam learning rate
    weight_decay: float  # Adam L2 weight decay
    max_epochs: int  # upper bound on training epochs
    patience: int  # stop after this many epochs without a better validation NDCG@K
    early_stopping_k: int  # K of the validation NDCG@K that picks the best epoch


@dataclass(frozen=True)
class BaselinesParams:
    eval_batch_size: int  # users ranked together during evaluation
    num_threads: int  # torch CPU threads (0 = torch's default, all cores)
    sasrec: SASRecParams  # SASRec (Kang & McAuley 2018) trained with full softmax cross-entropy


# --------------------------------------------------------------------------- peers


@dataclass(frozen=True)
class BootstrapParams:
    resamples: int  # bootstrap draws of the users (with replacement)
    confidence: float  # central share of the draws the interval spans, e.g. 0.95
    k: int  # cut-off of the HR@K / NDCG@K differences that get an interval


@dataclass(frozen=True)
class PeersParams:
    run: tuple[str, ...]  # cornac models to train: sasrec, bert4rec, gru4rec, tiger; () = none
    num_threads: int  # torch CPU threads (0 = torch's default, all cores)
    eval_batch_size: int  # users ranked together by our evaluation
    bootstrap: BootstrapParams  # paired bootstrap of each peer against our SASRec
    models: dict[str, dict[str, Any]]  # per peer: keyword arguments for cornac's model class


# --------------------------------------------------------------------------- mine


@dataclass(frozen=True)
class LLMParams:
    provider: Literal["anthropic", "openai", "openai_compatible"]  # wire format / SDK
    model: str  # model name; part of every cache key
    base_url: str | None  # API root (vLLM, Ollama, a gateway); null = the provider's default
    api_key_env: str | None  # environment variable holding the key; null = keyless server
    structured_output: bool  # send the answer's JSON schema (provider's structured mode)
    images: bool  # also mine each item's image with the item_image prompt
    users: bool  # also mine each user's training history with the user_history prompt
    max_tokens: int  # answer token limit per request
    temperature: float  # sampling temperature (0 = most repeatable)
    concurrency: int  # requests in flight
    requests_per_minute: int  # client-side start rate limit; 0 = none
    timeout_s: float  # per-request timeout (seconds) before a retry
    max_retries: int  # retries on 429 / 5xx / timeouts per request
    backoff_base_s: float  # first backoff (seconds) when no retry-after; doubles per retry
    backoff_max_s: float  # backoff ceiling (seconds)
    price_input_per_mtok: float  # USD per million input tokens (cost estimate)
    price_output_per_mtok: float  # USD per million output tokens (cost estimate)
    batch: bool  # use the provider's batch API (anthropic, openai): cheaper, slower
    batch_poll_s: float  # seconds between batch status polls


@dataclass(frozen=True)
class PromptVersions:
    item_text: str  # version of the item text prompt (prompts.py)
    item_image: str  # version of the item image prompt
    user_history: str  # version of the user history prompt


@dataclass(frozen=True)
class PrecomputedParams:
    path: str  # JSON-lines file of descriptors keyed by asin (see interests.jsonl)
    model_name: str  # provenance name recorded in Interest.models


@dataclass(frozen=True)
class MineParams:
    backends: tuple[str, ...]  # run in order and merged: names in llms, offline, precomputed
    max_descriptors: int  # descriptors kept per item and per user after merging
    merge_similarity: float  # cosine above which two descriptors are the same interest
    encoder: str  # sentence encoder for ranking (offline) and merging
    prompts: PromptVersions  # prompt version per modality
    max_description_chars: int  # item description cut to this many characters in prompts
    max_history_items: int  # most recent training items shown in a user-history prompt
    max_failure_rate: float  # stage fails when a backend's failed share of jobs is above this
    spending_cap_usd: float  # no new request once one run's estimated spend reaches this
    cache_dir: str  # persistent answer cache (outside data/mine: reruns never lose it)
    offline: OfflineSettings  # offline miner tunables (help: offline_miner.OfflineSettings)
    user_half_life: float  # user interests: age in items at which a purchase weighs half
    precomputed: PrecomputedParams  # settings of the precomputed backend
    llms: dict[str, LLMParams]  # named LLM backends; a name in backends selects one


# --------------------------------------------------------------------------- label and embed


@dataclass(frozen=True)
class TextTemplateParams:
    parts: tuple[str, ...]  # str.format parts over item fields; a part missing a field is dropped
    separator: str  # joins the parts (and the interests after them)
    max_description_chars: int  # description cut here so the interests after it fit the encoder


@dataclass(frozen=True)
class OfflineJudgeParams:
    lexical_weight: float  # weight of the descriptor's word overlap with its item's own text
    threshold: float  # judge says 1 when own-minus-mean-other similarity + lexical term >= this


@dataclass(frozen=True)
class LLMJudgeParams:
    provider: Literal["anthropic", "openai", "openai_compatible"]  # API of the judge model
    model: str  # model name; part of the answer cache key
    base_url: str | None  # server URL (openai_compatible: vLLM, Ollama, ...); null = provider's
    api_key_env: str | None  # environment variable holding the API key (never the key itself)
    prompt_version: str  # judge prompt version (llm_judge.JUDGE_PROMPTS); part of the cache key
    max_tokens: int  # answer token limit per item
    temperature: float  # sampling temperature (0 = as deterministic as the provider allows)
    timeout_s: float  # per-request timeout
    concurrency: int  # requests in flight
    max_retries: int  # retries of a 429 / 5xx / timeout, with exponential backoff and jitter
    max_failure_rate: float  # share of items without a usable answer before the stage fails


@dataclass(frozen=True)
class ClassifierParams:
    kind: Literal["logistic_regression", "hist_gradient_boosting"]  # scikit-learn model
    C: float  # logistic regression: inverse L2 strength (features standardised first)
    max_iter: int  # iterations (logistic regression) or boosting rounds (gradient boosting)
    learning_rate: float  # gradient boosting only
    max_leaf_nodes: int  # gradient boosting only


@dataclass(frozen=True)
class LabelParams:
    judge: Literal["offline", "llm"]  # who labels the sample: the offline rule or an LLM
    sample_size: int  # interests labelled by the judge (capped at all interests)
    test_fraction: float  # share of the judged sample's items held out for AUC and calibration
    threshold: float  # positive = p_positive >= threshold
    empty_quality: float  # q_i of an item with no descriptors
    ece_bins: int  # equal-width probability bins of the expected calibration error
    encoder: str  # sentence encoder for descriptor and item features (name, path or bundled:)
    batch_size: int  # texts per encoder batch
    evidence: TextTemplateParams  # the item's own text the judge and features see
    offline_judge: OfflineJudgeParams  # the no-LLM judge rule (judge: offline)
    llm_judge: LLMJudgeParams  # the LLM judge (judge: llm)
    classifier: ClassifierParams  # the classifier that learns the judge's labels


@dataclass(frozen=True)
class EmbedParams:
    encoder: str  # sentence encoder by name, local path or "bundled:all-MiniLM-L6-v2"
    batch_size: int  # texts per encoder batch
    normalize: bool  # unit-length rows
    use_interests: bool  # false: item text only, the shallow-text baseline
    text: TextTemplateParams  # the item's own text
    interests_template: str  # format of the positive interests after it, with {interests}
    interest_separator: str  # joins the positive descriptors


# --------------------------------------------------------------------------- rqvae


@dataclass(frozen=True)
class RqvaeParams:
    input_scaling: Literal["none", "l2", "standardize"]  # embedding scaling before the encoder
    hidden_dims: tuple[int, ...]  # encoder hidden widths; the decoder mirrors them
    latent_dim: int  # width D of the latent the codebooks quantize
    num_levels: int  # L, residual codebooks (SIDs have L codes plus a collision suffix)
    codebook_size: int  # K, codes per level
    commitment_weight: float  # beta: weight of the encoder's commitment loss
    epochs: int  # passes over all items
    batch_size: int  # items per step; at least N means full batch
    learning_rate: float  # AdamW learning rate
    weight_decay: float  # AdamW weight decay of encoder and decoder (codebooks exempt)
    kmeans_init: Literal["all", "first_batch"]  # latents that k-means initialises codebooks on
    kmeans_iterations: int  # Lloyd iterations per level of the k-means initialisation
    dead_code_threshold: int  # a code chosen fewer times than this in an epoch is re-seeded
    reseed_every: int  # epochs between dead-code re-seeding from a batch's residuals; 0 = never
    last_level: Literal["nearest", "balanced"]  # nearest code, or one-to-one per shared prefix


# --------------------------------------------------------------------------- sft


@dataclass(frozen=True)
class SftParams:
    backbone: Literal["scratch", "pretrained"]  # small model from a config, or checkpoint + LoRA
    model_type: str  # transformers model type of the scratch backbone (llama, qwen2, gpt2, ...)
    model_config: dict[str, Any]  # that config class's size keys (hidden_size, layers, heads...)
    pretrained_path: str | None  # local causal-LM checkpoint folder (backbone: pretrained)
    lora: dict[str, Any]  # peft.LoraConfig keys (backbone: pretrained)
    max_history: int  # most recent items in a prompt; longer training sequences are windowed
    max_text_tokens: int  # interest-text tokens kept per item or user text
    text_vocab_size: int  # most frequent interest words in the scratch tokenizer's vocabulary
    text_min_count: int  # a word enters that vocabulary if seen at least this often
    title_in_alignment: bool  # item text of the alignment tasks starts with the title
    inference_task: Literal["history", "interests_history"]  # the prompt used to recommend
    task_weights: dict[str, float]  # task -> copies of its examples per epoch (0 = off)
    valid_users: int  # users whose validation target gives the early-stopping loss (0 = all)
    early_stopping_patience: int  # evaluations without a lower validation loss before stopping
    max_minutes: float  # training time budget (minutes); the best checkpoint so far is kept
    trainer: dict[str, Any]  # passed straight into trl.SFTConfig (epochs, lr, batch sizes...)


# --------------------------------------------------------------------------- grpo


@dataclass(frozen=True)
class GrpoRewardWeights:
    exact: float  # weight of 1[candidate = target]
    valid: float  # lambda_valid: weight of 1[candidate is a catalogue SID]
    prefix: float  # lambda_pref: weight of LCP(candidate, target) / L over the RQ levels
    quality: float  # alpha: weight of q_target, paid only on an exact hit
    rank: float  # weight of the rank penalty -1/log2(rank + 2) of a wrong beam (0 = off)


@dataclass(frozen=True)
class GrpoParams:
    num_generations: int  # G: candidates per prompt = beams of the constrained beam search
    prompts_per_step: int  # prompts per optimiser step (batch = prompts_per_step * G)
    max_prompts: int  # users drawn as RL prompts (0 = all)
    learning_rate: float  # AdamW learning rate
    epochs: float  # passes over the prompts
    max_steps: int  # > 0 caps optimiser steps; -1 lets epochs decide
    max_minutes: float  # wall-clock training budget (minutes)
    beta: float  # KL weight to the SFT (reference) model
    epsilon: float  # PPO clip range of the probability ratio
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"]  # TRL's loss aggregation
    weights: GrpoRewardWeights  # weight of each reward term
    lora: dict[str, Any]  # peft.LoraConfig keys, used when sft.backbone is pretrained
    logging_steps: int  # optimiser steps between logged (plotted) points


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
    "baselines": BaselinesParams,
    "peers": PeersParams,
    "mine": MineParams,
    "label": LabelParams,
    "embed": EmbedParams,
    "rqvae": RqvaeParams,
    "sft": SftParams,
    "grpo": GrpoParams,
    "evaluate": EvaluateParams,
}


def load(section: str, path: str | Path = PARAMS_FILE) -> Any:
    """Load one section of ``params.yaml`` into its dataclass (strict; see config.py)."""
    if section not in SECTIONS:
        raise KeyError(f"no params section named '{section}' (known: {', '.join(SECTIONS)})")
    return load_section(path, section, SECTIONS[section])
