"""The backbones that write SIDs, and the folder format a trained model lives in.

Three backbones (METHOD.md, sft), chosen by ``sft.backbone``:

* ``item`` - :class:`~deepinterestgr.recommender.item_sid_model.ItemSidModel`: one position per
  history item, the next SID written level by level with a softmax over the prefix tree's children;
  trained from scratch, learns Beauty on a CPU.
* ``token`` - a small causal LM built from a ``transformers`` config (model type and sizes
  come straight from params, e.g. ``llama`` with ``hidden_size: 128``), one position per SID
  token, trained from scratch.
* ``pretrained`` - a causal LM checkpoint on disk with the SID tokens added, its embeddings
  resized, and LoRA adapters (peft) on every linear layer; the input and output embeddings are
  trained in full because the new SID rows start untrained.

A trained recommender folder (``data/sft/model``, ``data/grpo/model``) holds the model
(``save_pretrained``; LoRA merged, so loading needs no peft), the tokenizer
(:class:`~deepinterestgr.recommender.sid_tokenizer.SidTokenizer`) and ``recommender.json`` with the
prompt settings (:class:`~deepinterestgr.recommender.prompt.PromptSpec`) that training used and
inference must repeat.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from deepinterestgr.common.params import SftParams
from deepinterestgr.items.semantic_ids import token as sid_token
from deepinterestgr.recommender.constrained_decoding import SidPrefixTree
from deepinterestgr.recommender.item_sid_model import ItemSidConfig, ItemSidModel
from deepinterestgr.recommender.prompt import PromptSpec
from deepinterestgr.recommender.sid_tokenizer import (
    SidTokenizer,
    build_tokenizer,
    extend_pretrained_tokenizer,
    level_sizes_of,
    load_tokenizer,
    sid_token_ids,
)
from deepinterestgr.recommender.trainer_hooks import library_warnings_hidden

logger = logging.getLogger(__name__)

SPEC_FILE = "recommender.json"


class Recommender(NamedTuple):
    model: PreTrainedModel
    tokenizer: SidTokenizer
    spec: PromptSpec


def build_token_model(
    model_type: str, config: dict[str, Any], tokenizer: SidTokenizer
) -> PreTrainedModel:
    """A randomly initialised causal LM of ``model_type`` sized by ``config``.

    ``config`` holds the architecture keys of that model type's config class (e.g. for
    ``llama``: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
    max_position_embeddings); the vocabulary and special token ids come from ``tokenizer``.
    """
    model_config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **config,
    )
    model = AutoModelForCausalLM.from_config(model_config)
    logger.info(
        "built a %s model from scratch: %s parameters",
        model_type,
        f"{sum(p.numel() for p in model.parameters()):,}",
    )
    return model


def uses_text(config: SftParams) -> bool:
    """Whether any training task or the inference prompt reads interest text."""
    text_tasks = ("interests_history", "interests_to_sid", "sid_to_interests")
    weights = config.task_weights
    return config.inference_task != "history" or any(weights.get(t, 0) > 0 for t in text_tasks)


def build_backbone(
    config: SftParams, codes: np.ndarray, texts: Sequence[str]
) -> tuple[torch.nn.Module, SidTokenizer]:
    """The untrained model and tokenizer of ``config.backbone`` for SIDs ``codes`` int
    ``[N, L+1]``; ``texts`` (item and user interest texts) feed a scratch tokenizer's words,
    which are left out when no task reads text (a SID-only vocabulary)."""
    sizes = level_sizes_of(codes)
    if config.backbone == "pretrained":
        tokenizer = extend_pretrained_tokenizer(config.pretrained_path, sizes)
        return build_pretrained_lora_model(
            config.pretrained_path, tokenizer, config.lora
        ), tokenizer
    words = config.text_vocab_size if uses_text(config) else 0
    tokenizer = build_tokenizer(sizes, texts, words, config.text_min_count)
    if config.backbone == "token":
        return build_token_model(config.model_type, config.model_config, tokenizer), tokenizer
    item_config = dataclasses.asdict(config.item_model)
    # Training windows hold max_history + 1 items (the first is context only).
    return build_item_model(item_config, tokenizer, codes, config.max_history + 1), tokenizer


def build_item_model(
    config: dict[str, Any], tokenizer: SidTokenizer, codes: np.ndarray, max_items: int
) -> ItemSidModel:
    """A randomly initialised :class:`~deepinterestgr.recommender.item_sid_model.ItemSidModel`.

    ``config`` holds its size keys (hidden_size, num_hidden_layers, num_attention_heads,
    intermediate_size, dropout, item_id_embeddings, node_embeddings); the SID token layout and
    the catalogue come from ``tokenizer`` and ``codes`` int ``[N, L+1]``; ``max_items``: the
    most history items a prompt may hold (training windows included).
    """
    sid_ids = sid_token_ids(tokenizer, codes)
    sizes = level_sizes_of(codes)
    tree = SidPrefixTree.from_codes(sid_ids)
    starts = tokenizer.convert_tokens_to_ids([sid_token(level, 0) for level in range(len(sizes))])
    model_config = ItemSidConfig(
        vocab_size=len(tokenizer),
        level_starts=starts,
        level_sizes=sizes,
        num_items=len(codes),
        node_counts=[len(counts) for counts in tree.leaf_counts],
        max_items=max_items,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config,
    )
    model = ItemSidModel(model_config)
    model.set_catalogue(torch.from_numpy(sid_ids))
    logger.info(
        "built an item-level SID model: %s parameters",
        f"{sum(p.numel() for p in model.parameters()):,}",
    )
    return model


def build_pretrained_lora_model(
    path: str | Path, tokenizer: SidTokenizer, lora: dict[str, Any]
) -> torch.nn.Module:
    """A pretrained causal LM with embeddings resized to ``tokenizer`` and LoRA adapters.

    ``lora`` holds ``peft.LoraConfig`` keys (r, lora_alpha, lora_dropout, target_modules...).
    Returns a ``peft.PeftModel``; :func:`save_recommender` merges the adapters on save.
    """
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    # The new SID rows are random: train both embedding matrices in full, not through LoRA.
    embedding_modules = {
        _module_name(model, model.get_input_embeddings()),
        _module_name(model, model.get_output_embeddings()),
    }
    config = LoraConfig(task_type="CAUSAL_LM", modules_to_save=sorted(embedding_modules), **lora)
    with library_warnings_hidden():
        peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    logger.info("loaded %s with LoRA: %s trainable parameters", path, f"{trainable:,}")
    return peft_model


def _module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.split(".")[-1]
    raise ValueError(f"module {type(module).__name__} is not part of the model")


def save_recommender(
    folder: str | Path, model: torch.nn.Module, tokenizer: SidTokenizer, spec: PromptSpec
) -> None:
    """Write model (LoRA merged), tokenizer and prompt spec into ``folder``.

    The generation config is reset to greedy defaults so nothing downstream inherits sampling
    settings; constrained decoding ignores it anyway.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.generation_config.do_sample = False
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / SPEC_FILE).write_text(json.dumps(dataclasses.asdict(spec), indent=2) + "\n")


def load_recommender(folder: str | Path, device: str | torch.device = "cpu") -> Recommender:
    """Load what :func:`save_recommender` wrote, in eval mode on ``device``."""
    folder = Path(folder)
    spec_path = folder / SPEC_FILE
    if not spec_path.exists():
        raise FileNotFoundError(f"{spec_path}: missing; is {folder} a saved recommender?")
    spec = PromptSpec(**json.loads(spec_path.read_text()))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device)
    model.eval()
    return Recommender(model, load_tokenizer(folder), spec)
