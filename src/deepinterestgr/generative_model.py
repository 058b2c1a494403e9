"""The decoder-only backbone that writes SIDs, and the folder format a trained model lives in.

Two backbones (METHOD.md, sft):

* ``scratch`` - a small causal LM built from a ``transformers`` config (model type and sizes
  come straight from params, e.g. ``llama`` with ``hidden_size: 128``), trained from scratch;
  fast on a CPU.
* ``pretrained`` - a causal LM checkpoint on disk with the SID tokens added, its embeddings
  resized, and LoRA adapters (peft) on every linear layer; the input and output embeddings are
  trained in full because the new SID rows start untrained.

A trained recommender folder (``data/sft/model``, ``data/grpo/model``) holds the model
(``save_pretrained``; LoRA merged, so loading needs no peft), the tokenizer
(:class:`~deepinterestgr.sid_tokenizer.SidTokenizer`) and ``recommender.json`` with the
prompt settings (:class:`PromptSpec`) that training used and inference must repeat.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from deepinterestgr.sid_tokenizer import SidTokenizer, load_tokenizer

logger = logging.getLogger(__name__)

SPEC_FILE = "recommender.json"


@dataclasses.dataclass(frozen=True)
class PromptSpec:
    """How a recommendation prompt is written (see :mod:`deepinterestgr.sft_data`)."""

    task: str  # "history" or "interests_history"
    max_history: int  # most recent history items in a prompt
    max_text_tokens: int  # interest-text tokens kept per prompt


class Recommender(NamedTuple):
    model: PreTrainedModel
    tokenizer: SidTokenizer
    spec: PromptSpec


def build_scratch_model(
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
