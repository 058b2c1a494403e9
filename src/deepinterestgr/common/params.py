"""One frozen dataclass per ``params.yaml`` section (STYLE.md, convention 5).

Fields have no defaults on purpose: ``params.yaml`` is the single place a value is set, and
a key missing from it is an error naming the key (see :mod:`deepinterestgr.common.config`).
Each field's comment is its help line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepinterestgr.common.config import ConfigError, build, load_section, load_yaml

PARAMS_FILE = Path("params.yaml")


# --------------------------------------------------------------------------- base


@dataclass(frozen=True)
class BaseParams:
    seed: int  # the one seed every stage derives its randomness from
    num_threads: int  # CPU threads of every stage; results repeat bit for bit only at one count


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
    activation: Literal["gelu", "relu"]  # non-linearity of the feed-forward layer
    dropout: float  # dropout on embeddings, attention weights and feed-forward outputs
    max_len: int  # most recent history items the model reads (older ones are cut)
    scale_embeddings: bool  # input item embeddings times sqrt(hidden_size) (Kang & McAuley)
    positions: Literal["from_oldest", "from_newest"]  # position 0 = oldest kept or newest item
    loss: Literal["full_softmax", "sampled_softmax"]  # softmax over all items or a sampled set
    num_negatives: int  # sampled_softmax: popularity-sampled items shared by a batch
    negative_exponent: float  # sampled_softmax: sampling weight = training count ** exponent
    batch_size: int  # training sequences per optimisation step
    learning_rate: float  # Adam peak learning rate
    adam_beta2: float  # Adam second-moment decay
    weight_decay: float  # Adam L2 weight decay
    warmup_steps: int  # optimisation steps of linear learning-rate warm-up from 0
    lr_schedule: Literal["constant", "cosine"]  # then constant, or cosine to 0 at max_epochs
    max_epochs: int  # upper bound on training epochs
    patience: int  # stop after this many epochs without a better validation NDCG@K
    early_stopping_k: int  # K of the validation NDCG@K that picks the best epoch


@dataclass(frozen=True)
class BaselinesParams:
    eval_batch_size: int  # users ranked together during evaluation
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
    eval_batch_size: int  # users ranked together by our evaluation
    bootstrap: BootstrapParams  # paired bootstrap of each peer against our SASRec
    models: dict[str, dict[str, Any]]  # per peer: keyword arguments for cornac's model class


# --------------------------------------------------------------------------- mine


@dataclass(frozen=True)
class LLMParams:
    # A wire format of llm.backends.PROVIDERS (anthropic, openai, openai_compatible); checked by
    # the params stage (interests.mining.mining_problems), as this module does not import llm.
    provider: str
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
class OfflineMinerParams:
    min_df: int  # keep an n-gram only when this many brands use it (see own_candidates)
    ngram_max: int  # longest n-gram (shortest is 2 words)
    window: int  # co-purchase partners: items within this many positions in a history
    min_support: int  # partners that must propose a phrase before "paired with" it
    min_lift: float  # ... and its share among partners over its catalogue share
    context_weight: float  # weight of the co-purchase context in a candidate's score
    co_purchase_discount: float  # factor on "paired with" candidates' scores
    min_paired_score: float  # "paired with" candidates scoring less are dropped
    # confidence = score * this: a phrase's cosine to its own item runs high (0.6-0.95) though
    # it is surface evidence, so it should not outrank an LLM's reasoned interest in a merge
    confidence_scale: float
    diversity: float  # MMR trade-off: 0 = pure relevance, 1 = pure novelty
    duplicate_threshold: float  # cosine at or above which two phrases are one
    description_chars: int  # description prefix searched for candidate phrases
    # Item vector: 0 = mean of its candidate phrase vectors (no extra encoder pass, the default
    # for speed); > 0 = its text (item_text) cut at this many characters, encoded.
    item_text_chars: int
    batch_size: int  # encoder batch size


@dataclass(frozen=True)
class MineParams:
    backends: tuple[str, ...]  # run in order and merged: names in llms, offline, precomputed
    max_descriptors: int  # descriptors kept per item and per user after merging
    merge_similarity: float  # cosine above which two descriptors are the same interest
    encoder: str  # sentence encoder for ranking (offline) and merging
    merge_batch_size: int  # descriptors per encoder batch when merging backends
    prompts: PromptVersions  # prompt version per modality
    max_description_chars: int  # item description cut to this many characters in prompts
    max_history_items: int  # most recent training items shown in a user-history prompt
    max_failure_rate: float  # stage fails when a backend's failed share of jobs is above this
    failed_retries: int  # reruns that ask a job again after its cached answer failed (0 = never)
    max_consecutive_failures: int  # a backend stops after this many failed answers in a row
    spending_cap_usd: float  # hard cap per run: a request starts only if its maximum cost fits
    offline: OfflineMinerParams  # the offline (no-LLM) miner's tunables
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
    # A name in mine.llms: provider, model, key, retries, rate limit and prices come from it
    backend: str
    prompt_version: str  # judge prompt version (llm_judge.JUDGE_PROMPTS); part of the cache key
    max_tokens: int  # answer token limit per item (a judgement is short); part of the cache key
    spending_cap_usd: float  # hard cap per run of the judge (cached answers are free)
    failed_retries: int  # reruns that ask an item again after its cached answer failed
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
    max_collision_rate: float  # stage fails when more items than this share need a suffix code


# --------------------------------------------------------------------------- sft


@dataclass(frozen=True)
class ItemModelParams:
    hidden_size: int  # width of item, position and code embeddings and of every block
    num_hidden_layers: int  # causal self-attention blocks over the history's items
    num_attention_heads: int  # attention heads per block (must divide hidden_size)
    intermediate_size: int  # inner width of each block's feed-forward layer
    dropout: float  # dropout on the inputs, attention weights and feed-forward outputs
    item_id_embeddings: bool  # add a per-item embedding to the sum of its code embeddings
    node_embeddings: bool  # a child's output vector adds its own prefix-tree node's (below level 1)


@dataclass(frozen=True)
class SelectionParams:
    metric: str  # picks the best evaluation: ndcg@K or hr@K (sampled validation ranking), loss
    users: int  # validation users sampled for the ranking and the loss (0 = all)
    patience: int  # evaluations without a better metric before training stops


@dataclass(frozen=True)
class SftParams:
    backbone: Literal["item", "token", "pretrained"]  # item-level, token-level, checkpoint+LoRA
    item_model: ItemModelParams  # sizes of the item-level backbone (backbone: item)
    model_type: str  # transformers model type of the token-level backbone (llama, qwen2, ...)
    model_config: dict[str, Any]  # that config class's size keys (backbone: token)
    pretrained_path: str | None  # local causal-LM checkpoint folder (backbone: pretrained)
    lora: dict[str, Any]  # peft.LoraConfig keys (backbone: pretrained)
    max_history: int  # most recent items in a prompt; longer training sequences are windowed
    max_text_tokens: int  # interest-text tokens kept per item or user text
    text_vocab_size: int  # most frequent interest words in a scratch tokenizer (text tasks on)
    text_min_count: int  # a word enters that vocabulary if seen at least this often
    title_in_alignment: bool  # item text of the alignment tasks starts with the title
    inference_task: Literal["history", "interests_history"]  # the prompt used to recommend
    task_weights: dict[str, float]  # task -> copies of its examples per epoch (0 = off)
    selection: SelectionParams  # how the kept checkpoint is chosen and when training stops
    max_minutes: float  # training time budget (minutes); the best checkpoint so far is kept
    trainer: dict[str, Any]  # passed straight into trl.SFTConfig (epochs, lr, batch sizes...)


# --------------------------------------------------------------------------- grpo


@dataclass(frozen=True)
class RewardWeights:
    """Weight of each term of the Interest-Aware Reward (deepinterestgr.recommender.rewards)."""

    exact: float  # weight of 1[candidate = target]
    valid: float  # lambda_valid: weight of 1[candidate is a catalogue SID]
    prefix: float  # lambda_pref: weight of LCP(candidate, target) / L over the RQ levels
    quality: float  # alpha: weight of q_target, paid only on an exact hit
    rank: float  # weight of the rank penalty -1/log2(rank + 2) of a wrong beam (0 = off)


@dataclass(frozen=True)
class GrpoParams:
    max_prompts: int  # users drawn as RL prompts (0 = all)
    max_minutes: float  # wall-clock training budget (minutes)
    weights: RewardWeights  # weight of each reward term (TRL's reward_weights, in TERMS order)
    lora: dict[str, Any]  # peft.LoraConfig keys, used when sft.backbone is pretrained
    trainer: dict[str, Any]  # passed straight into trl.GRPOConfig (G, batch, lr, epochs, KL...)


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
    value = load_section(path, section, SECTIONS[section])
    validate(section, value, path)
    return value


# --------------------------------------------------------------------------- validation
#
# Loading checks keys and types; the validators below check ranges and the rules that tie
# fields together. :func:`load_all` runs both for every section at the start of every stage
# (deepinterestgr.common.stage_guard), so a bad ``dvc exp run -S ...`` fails in a second, before
# any stage reads or writes, whichever stage DVC happens to run first.

Problem = tuple[str, str]  # (dotted key inside the section, what is wrong with its value)
Problems = Iterator[Problem]

# Leave-one-out needs a training item, a validation and a test target
# (data_sources.dataset.MIN_SEQUENCE_LENGTH; not imported: data_sources imports this module).
_MIN_SEQUENCE_LENGTH = 3


def _at_least(minimum: float, values: dict[str, float]) -> Problems:
    for key, value in values.items():
        if value < minimum:
            yield key, f"{value!r} is below the minimum {minimum}"


def _above(minimum: float, values: dict[str, float]) -> Problems:
    for key, value in values.items():
        if value <= minimum:
            yield key, f"{value!r} must be above {minimum}"


def _share(values: dict[str, float]) -> Problems:
    """Probabilities and rates: in [0, 1]."""
    for key, value in values.items():
        if not 0.0 <= value <= 1.0:
            yield key, f"{value!r} is outside [0, 1]"


def _validate_base(p: BaseParams) -> Problems:
    yield from _at_least(0, {"seed": p.seed})  # numpy and torch take non-negative seeds
    yield from _at_least(1, {"num_threads": p.num_threads})


def _validate_download(p: DownloadParams) -> Problems:
    s = p.synthetic
    yield from _at_least(1, {"kcore": p.kcore})
    yield from _share({"max_skip_rate": p.max_skip_rate})
    yield from _at_least(
        1,
        {
            "synthetic.num_users": s.num_users,
            "synthetic.num_items": s.num_items,
            "synthetic.num_interests": s.num_interests,
            "synthetic.image_size": s.image_size,
        },
    )
    yield from _at_least(_MIN_SEQUENCE_LENGTH, {"synthetic.min_length": s.min_length})
    if s.max_length < s.min_length:
        yield "synthetic.max_length", f"{s.max_length} is below synthetic.min_length {s.min_length}"
    yield from _share({"synthetic.habit_strength": s.habit_strength})


def _validate_baselines(p: BaselinesParams) -> Problems:
    m = p.sasrec
    yield from _at_least(1, {"eval_batch_size": p.eval_batch_size})
    yield from _at_least(
        1,
        {
            "sasrec.hidden_size": m.hidden_size,
            "sasrec.num_blocks": m.num_blocks,
            "sasrec.num_heads": m.num_heads,
            "sasrec.feedforward_size": m.feedforward_size,
            "sasrec.max_len": m.max_len,
            "sasrec.batch_size": m.batch_size,
            "sasrec.max_epochs": m.max_epochs,
            "sasrec.early_stopping_k": m.early_stopping_k,
        },
    )
    if m.num_heads >= 1 and m.hidden_size % m.num_heads:
        yield "sasrec.num_heads", f"{m.num_heads} does not divide hidden_size {m.hidden_size}"
    yield from _at_least(
        0,
        {
            "sasrec.patience": m.patience,
            "sasrec.weight_decay": m.weight_decay,
            "sasrec.warmup_steps": m.warmup_steps,
            "sasrec.negative_exponent": m.negative_exponent,
        },
    )
    yield from _above(0, {"sasrec.learning_rate": m.learning_rate})
    if not 0.0 <= m.adam_beta2 < 1.0:
        yield "sasrec.adam_beta2", f"{m.adam_beta2!r} is outside [0, 1)"
    if m.loss == "sampled_softmax" and m.num_negatives < 1:
        yield "sasrec.num_negatives", f"{m.num_negatives} is below 1, but loss is sampled_softmax"
    if not 0.0 <= m.dropout < 1.0:
        yield "sasrec.dropout", f"{m.dropout!r} is outside [0, 1)"


def _validate_llm(key: str, p: LLMParams) -> Problems:
    yield from _at_least(
        1, {f"{key}.concurrency": p.concurrency, f"{key}.max_tokens": p.max_tokens}
    )
    yield from _at_least(
        0,
        {
            f"{key}.requests_per_minute": p.requests_per_minute,
            f"{key}.max_retries": p.max_retries,
            f"{key}.backoff_base_s": p.backoff_base_s,
            f"{key}.price_input_per_mtok": p.price_input_per_mtok,
            f"{key}.price_output_per_mtok": p.price_output_per_mtok,
            f"{key}.temperature": p.temperature,
        },
    )
    yield from _above(0, {f"{key}.timeout_s": p.timeout_s, f"{key}.batch_poll_s": p.batch_poll_s})
    if p.backoff_max_s < p.backoff_base_s:
        yield f"{key}.backoff_max_s", f"{p.backoff_max_s!r} is below backoff_base_s"


def _validate_mine(p: MineParams) -> Problems:
    # What only the llm and interests groups know (providers' needs, prompt versions) is checked
    # by interests.mining.mining_problems, in the params stage: this module imports neither.
    known = ("offline", "precomputed", *p.llms)
    if not p.backends:
        yield "backends", "empty; name at least one of " + ", ".join(known)
    for k, name in enumerate(p.backends):
        if name not in known:
            yield f"backends[{k}]", f"unknown backend '{name}' (known: {', '.join(known)})"
        elif name in p.backends[:k]:
            yield f"backends[{k}]", f"'{name}' is listed twice"
    yield from _at_least(
        1,
        {
            "max_descriptors": p.max_descriptors,
            "max_description_chars": p.max_description_chars,
            "max_history_items": p.max_history_items,
            "merge_batch_size": p.merge_batch_size,
        },
    )
    yield from _above(
        0, {"merge_similarity": p.merge_similarity, "user_half_life": p.user_half_life}
    )
    yield from _share({"max_failure_rate": p.max_failure_rate})
    yield from _at_least(
        0,
        {
            "failed_retries": p.failed_retries,
            "max_consecutive_failures": p.max_consecutive_failures,
            "spending_cap_usd": p.spending_cap_usd,
        },
    )
    o = p.offline
    yield from _at_least(
        1,
        {
            "offline.min_df": o.min_df,
            "offline.ngram_max": o.ngram_max,
            "offline.window": o.window,
            "offline.min_support": o.min_support,
            "offline.batch_size": o.batch_size,
        },
    )
    yield from _at_least(0, {"offline.description_chars": o.description_chars})
    yield from _at_least(0, {"offline.item_text_chars": o.item_text_chars})
    yield from _share(
        {
            "offline.diversity": o.diversity,
            "offline.context_weight": o.context_weight,
            "offline.confidence_scale": o.confidence_scale,
        }
    )
    for name, llm in p.llms.items():
        yield from _validate_llm(f"llms.{name}", llm)


def _validate_text_template(key: str, p: TextTemplateParams) -> Problems:
    if not p.parts:
        yield f"{key}.parts", "empty; an item would have no text"
    if p.max_description_chars < 0:
        yield f"{key}.max_description_chars", f"{p.max_description_chars} is negative"


def _validate_label(p: LabelParams) -> Problems:
    yield from _at_least(1, {"sample_size": p.sample_size, "ece_bins": p.ece_bins})
    yield from _at_least(1, {"batch_size": p.batch_size})
    if not 0.0 < p.test_fraction < 1.0:
        yield "test_fraction", f"{p.test_fraction!r} is outside (0, 1)"
    yield from _share({"threshold": p.threshold, "empty_quality": p.empty_quality})
    yield from _validate_text_template("evidence", p.evidence)
    j = p.llm_judge
    yield from _at_least(1, {"llm_judge.max_tokens": j.max_tokens})
    yield from _at_least(
        0,
        {
            "llm_judge.spending_cap_usd": j.spending_cap_usd,
            "llm_judge.failed_retries": j.failed_retries,
        },
    )
    yield from _share({"llm_judge.max_failure_rate": j.max_failure_rate})
    c = p.classifier
    yield from _above(0, {"classifier.C": c.C, "classifier.learning_rate": c.learning_rate})
    yield from _at_least(1, {"classifier.max_iter": c.max_iter})
    yield from _at_least(2, {"classifier.max_leaf_nodes": c.max_leaf_nodes})


def _validate_embed(p: EmbedParams) -> Problems:
    yield from _at_least(1, {"batch_size": p.batch_size})
    yield from _validate_text_template("text", p.text)
    if "{interests}" not in p.interests_template:
        yield "interests_template", f"{p.interests_template!r} has no {{interests}} field"


def _validate_rqvae(p: RqvaeParams) -> Problems:
    yield from _at_least(1, {f"hidden_dims[{k}]": width for k, width in enumerate(p.hidden_dims)})
    yield from _at_least(
        1,
        {
            "latent_dim": p.latent_dim,
            "num_levels": p.num_levels,
            "epochs": p.epochs,
            "batch_size": p.batch_size,
            "kmeans_iterations": p.kmeans_iterations,
        },
    )
    # One code per level carries no information: every item would collide.
    yield from _at_least(2, {"codebook_size": p.codebook_size})
    yield from _above(0, {"learning_rate": p.learning_rate})
    yield from _at_least(
        0,
        {
            "commitment_weight": p.commitment_weight,
            "weight_decay": p.weight_decay,
            "dead_code_threshold": p.dead_code_threshold,
            "reseed_every": p.reseed_every,
        },
    )
    yield from _share({"max_collision_rate": p.max_collision_rate})


SELECTION_METRIC = re.compile(r"(hr|ndcg)@([1-9][0-9]*)|loss")


def _validate_sft(p: SftParams) -> Problems:
    yield from _at_least(1, {"max_history": p.max_history, "text_min_count": p.text_min_count})
    yield from _at_least(
        0,
        {
            "max_text_tokens": p.max_text_tokens,
            "text_vocab_size": p.text_vocab_size,
            "selection.users": p.selection.users,
            "selection.patience": p.selection.patience,
        },
    )
    yield from _above(0, {"max_minutes": p.max_minutes})
    model = p.item_model
    yield from _at_least(
        1,
        {
            "item_model.hidden_size": model.hidden_size,
            "item_model.num_hidden_layers": model.num_hidden_layers,
            "item_model.num_attention_heads": model.num_attention_heads,
            "item_model.intermediate_size": model.intermediate_size,
        },
    )
    if model.num_attention_heads >= 1 and model.hidden_size % model.num_attention_heads:
        yield (
            "item_model.num_attention_heads",
            f"{model.num_attention_heads} does not divide hidden_size {model.hidden_size}",
        )
    yield from _share({"item_model.dropout": model.dropout})
    if not SELECTION_METRIC.fullmatch(p.selection.metric):
        yield "selection.metric", f"{p.selection.metric!r} is not ndcg@K, hr@K or loss"
    if p.backbone == "pretrained" and p.pretrained_path is None:
        yield "pretrained_path", "null, but backbone is pretrained"
    for task, weight in p.task_weights.items():
        if weight < 0:
            yield f"task_weights.{task}", f"{weight!r} is negative"
    if not any(weight > 0 for weight in p.task_weights.values()):
        yield "task_weights", "no task has a positive weight: nothing to train on"
    yield from _set_in_code(p.trainer, SFT_TRAINER_SET_IN_CODE)


# Trainer-config keys the training code sets itself, from other params or from the machine; a
# ``trainer`` section that sets one too would make TRL's config class fail on a duplicate keyword.
SFT_TRAINER_SET_IN_CODE = {
    "output_dir": "the stage's checkpoint folder",
    "seed": "base.seed",
    "data_seed": "base.seed",
    "report_to": "DVCLive, through the shared callback",
    "load_best_model_at_end": "sft.selection",
    "metric_for_best_model": "sft.selection.metric",
    "greater_is_better": "sft.selection.metric",
    "save_only_model": "the checkpoint selection",
    "save_total_limit": "the checkpoint selection",
    "max_length": "sft.max_history (examples are built within the context)",
    "dataloader_pin_memory": "whether a GPU is present",
}
GRPO_TRAINER_SET_IN_CODE = {
    "output_dir": "a scratch folder (nothing is checkpointed)",
    "seed": "base.seed",
    "data_seed": "base.seed",
    "report_to": "DVCLive, through the shared callback",
    "reward_weights": "grpo.weights",
    "use_cpu": "whether a GPU is present",
    "dataloader_pin_memory": "whether a GPU is present",
}
GRPO_LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")


def _set_in_code(trainer: dict[str, Any], set_in_code: dict[str, str]) -> Problems:
    for key in trainer.keys() & set_in_code.keys():
        yield f"trainer.{key}", f"set by the training code from {set_in_code[key]}; remove it"


def _trainer_numbers(trainer: dict[str, Any], keys: tuple[str, ...]) -> Problems:
    """Keys the code relies on: present, and numbers (YAML reads ``1e-4`` as a string)."""
    for key in keys:
        value = trainer.get(key)
        if key not in trainer:
            yield f"trainer.{key}", "missing"
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            yield f"trainer.{key}", f"{value!r} is not a number (write 1.0e-4, not 1e-4)"


def _validate_grpo(p: GrpoParams) -> Problems:
    yield from _at_least(0, {"max_prompts": p.max_prompts})
    yield from _above(0, {"max_minutes": p.max_minutes})
    w = p.weights
    yield from _at_least(
        0,
        {
            "weights.exact": w.exact,
            "weights.valid": w.valid,
            "weights.prefix": w.prefix,
            "weights.quality": w.quality,
            "weights.rank": w.rank,
        },
    )
    t = p.trainer
    yield from _set_in_code(t, GRPO_TRAINER_SET_IN_CODE)
    numbers = (
        "num_generations",
        "per_device_train_batch_size",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "beta",
        "epsilon",
        "logging_steps",
    )
    missing_or_not_numbers = list(_trainer_numbers(t, numbers))
    yield from missing_or_not_numbers
    if missing_or_not_numbers:
        return
    # A group of one has no spread: every advantage (R - mean) / std would be zero.
    yield from _at_least(2, {"trainer.num_generations": t["num_generations"]})
    yield from _at_least(
        1,
        {
            "trainer.per_device_train_batch_size": t["per_device_train_batch_size"],
            "trainer.logging_steps": t["logging_steps"],
        },
    )
    # The rollout answers each prompt's G copies with one beam search: a batch holds whole groups.
    if t["num_generations"] >= 2 and t["per_device_train_batch_size"] % t["num_generations"]:
        yield (
            "trainer.per_device_train_batch_size",
            f"{t['per_device_train_batch_size']} is not a multiple of "
            f"trainer.num_generations {t['num_generations']} (whole groups per step)",
        )
    yield from _at_least(0, {"trainer.beta": t["beta"]})
    yield from _above(
        0,
        {
            "trainer.learning_rate": t["learning_rate"],
            "trainer.num_train_epochs": t["num_train_epochs"],
            "trainer.epsilon": t["epsilon"],
        },
    )
    if t["max_steps"] == 0 or t["max_steps"] < -1:
        yield "trainer.max_steps", f"{t['max_steps']} must be -1 (epochs decide) or positive"
    if t.get("loss_type", "grpo") not in GRPO_LOSS_TYPES:
        yield "trainer.loss_type", f"{t['loss_type']!r} is not one of {', '.join(GRPO_LOSS_TYPES)}"


def _validate_evaluate(p: EvaluateParams) -> Problems:
    if not p.ks:
        yield "ks", "empty; give at least one cut-off K"
        return
    for k, cutoff in enumerate(p.ks):
        if cutoff < 1:
            yield f"ks[{k}]", f"{cutoff} is below 1"
        elif cutoff in p.ks[:k]:
            yield f"ks[{k}]", f"{cutoff} is listed twice"
    if p.num_beams < max(p.ks):
        yield (
            "num_beams",
            (
                f"{p.num_beams} is below max(evaluate.ks) = {max(p.ks)} (the beams are the "
                "ranked list)"
            ),
        )
    yield from _at_least(1, {"batch_size": p.batch_size})


def _validate_peers(p: PeersParams) -> Problems:
    # Which names exist and whether cornac is installed is checked by the peers stage itself,
    # before any training: a pipeline that runs no peer never imports cornac.
    for name in p.run:
        if name not in p.models:
            yield "run", f"unknown peer '{name}' (known: {', '.join(p.models)})"
    yield from _at_least(
        1, {"eval_batch_size": p.eval_batch_size, "bootstrap.k": p.bootstrap.k,
            "bootstrap.resamples": p.bootstrap.resamples}
    )  # fmt: skip
    if not 0.0 < p.bootstrap.confidence < 1.0:
        yield "bootstrap.confidence", f"{p.bootstrap.confidence!r} is outside (0, 1)"


# Section name -> its validator. A section without one is only loaded (keys and types).
VALIDATORS: dict[str, Callable[[Any], Problems]] = {
    "base": _validate_base,
    "download": _validate_download,
    "baselines": _validate_baselines,
    "mine": _validate_mine,
    "label": _validate_label,
    "embed": _validate_embed,
    "rqvae": _validate_rqvae,
    "sft": _validate_sft,
    "grpo": _validate_grpo,
    "evaluate": _validate_evaluate,
    "peers": _validate_peers,
}


def validate(section: str, value: Any, path: str | Path = PARAMS_FILE) -> None:
    """Raise :class:`ConfigError` naming every out-of-range value of one loaded section."""
    validator = VALIDATORS.get(section)
    raise_problems(section, validator(value) if validator is not None else (), path)


def raise_problems(
    section: str, problems: Iterable[Problem], path: str | Path = PARAMS_FILE
) -> None:
    """Raise one :class:`ConfigError` line naming every ``(key, message)`` of ``section``."""
    problems = list(problems)
    if problems:
        where = Path(path).name
        raise ConfigError(
            "; ".join(f"{where}:{section}.{key}: {message}" for key, message in problems)
        )


def load_all(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Load and validate every section of ``params.yaml``: section name -> dataclass.

    Strict like :func:`load` (unknown, missing or mistyped keys are errors), plus the range
    and cross-field checks of :data:`VALIDATORS`. The first bad section raises
    :class:`ConfigError`, one line naming each bad key.
    """
    data = load_yaml(path)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section '{unknown[0]}' (known: {', '.join(SECTIONS)})")
    sections = {}
    for section, cls in SECTIONS.items():
        if section not in data:
            raise ConfigError(f"{path}: missing section '{section}'")
        sections[section] = build(cls, data[section], f"{Path(path).name}:{section}")
        validate(section, sections[section], path)
    judge_backend, llms = sections["label"].llm_judge.backend, sections["mine"].llms
    if judge_backend not in llms:
        raise ConfigError(
            f"{Path(path).name}:label.llm_judge.backend: unknown backend '{judge_backend}' "
            f"(known: the names in mine.llms: {', '.join(llms) or 'none'})"
        )
    selection = SELECTION_METRIC.fullmatch(sections["sft"].selection.metric)
    beams = sections["evaluate"].num_beams
    if selection and selection.group(2) and int(selection.group(2)) > beams:
        raise ConfigError(
            f"{Path(path).name}:sft.selection.metric: K of {selection.group(0)} is above "
            f"evaluate.num_beams ({beams}), the length of the validation ranking"
        )
    return sections
