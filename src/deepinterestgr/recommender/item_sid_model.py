"""An item-level generative recommender: reads a history item by item, writes the next SID level
by level, each level's softmax over the prefix tree's children (METHOD.md, sft; issue of
training cost on a CPU).

A token-level decoder spends ``L+1`` positions per history item and most of its early training
on learning which codes follow which, i.e. the catalogue's prefix tree, which the decoder knows
already. This backbone reads a history the way SASRec does, one position per item, and factorises
the next item's probability over its SID levels with the tree built in::

    x_0 = e(task token) + mean e(prompt text tokens)          the prompt head, position 0
    x_j = sum_l e(SID token of item j at level l) [+ e_item(j)]  history item j = 1..n
    s_0 .. s_n = CausalTransformer(x + position)               s_j: the user after j items
    z_l = LayerNorm(s + sum_{l' < l} e(c_l'))                  conditioned on the codes chosen
    log p(c_l | s, c_<l) = log_softmax_{c in children(c_<l)} z_l . e(c)

so ``log p(item) = sum_l log p(c_l | ...)``: a distribution over the catalogue's items only; an
invalid SID has zero probability. Output embeddings are the input embeddings (tied), so a level's
head costs one ``[H, V_l]`` product with ``V_l <= K`` and never touches the text vocabulary. Text
labels (the ``sid_to_interests`` alignment task) have their own head over the non-SID tokens.

The model keeps the token interface of a causal LM (``input_ids`` of the project's SID
tokenizer, next-token labels), so TRL trains it (:mod:`deepinterestgr.recommender.sft_training`),
GRPO scores completions with it and the prefix-tree beam search decodes it
(:mod:`deepinterestgr.recommender.constrained_decoding`, through :meth:`ItemSidModel.sid_scorer`).
A prompt is ``<task> [text ... <sep>] SID SID ...``; tokens before the first SID token form the
head, padding (left or right) is ignored. The catalogue's SID token ids are a buffer of the model,
so the tree travels with ``save_pretrained``.

``forward(..., labels, fused_lm_head=True)`` returns per-token log-probabilities, entropies and
top-1 flags of the labelled tokens only (what TRL's SFT and GRPO trainers read), computed with
the tree-normalised softmax; without ``fused_lm_head`` it returns full-vocabulary logits whose
log-softmax gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutput
from transformers.utils import ModelOutput

from deepinterestgr.recommender.constrained_decoding import SidPrefixTree

IGNORE = -100


class ItemSidConfig(PretrainedConfig):
    """Sizes of :class:`ItemSidModel` and where its SID tokens sit in the vocabulary.

    ``level_starts[l]``/``level_sizes[l]``: SID tokens of level ``l`` are the ids
    ``level_starts[l] .. level_starts[l] + level_sizes[l] - 1`` (the last level is the collision
    suffix). ``max_items``: the most history items a prompt may hold (prompt head excluded).
    ``item_id_embeddings``: an input item is also a per-item vector. ``node_embeddings``: below
    the first level, a child's output vector is its code's plus its own prefix-tree node's, so
    items that share codes can still be told apart; ``node_counts[l]``: nodes at depth ``l + 1``
    (the last depth's nodes are the items).
    """

    model_type = "item_sid"
    # Read by TRL and transformers when a model class is not one of theirs; this class is
    # registered with the Auto classes, not loaded as remote code. A class attribute: never saved.
    auto_map = MappingProxyType({})

    def __init__(
        self,
        vocab_size: int = 8,
        level_starts: tuple[int, ...] = (4,),
        level_sizes: tuple[int, ...] = (1,),
        num_items: int = 1,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int = 256,
        dropout: float = 0.3,
        max_items: int = 50,
        item_id_embeddings: bool = False,
        node_embeddings: bool = False,
        node_counts: tuple[int, ...] = (),
        pad_token_id: int = 0,
        eos_token_id: int = 1,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.level_starts = list(level_starts)
        self.level_sizes = list(level_sizes)
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        self.max_items = max_items
        self.item_id_embeddings = item_id_embeddings
        self.node_embeddings = node_embeddings
        self.node_counts = list(node_counts)
        kwargs.setdefault("tie_word_embeddings", False)  # no separate output matrix to tie
        super().__init__(pad_token_id=pad_token_id, eos_token_id=eos_token_id, **kwargs)


@dataclass
class SidLogProbOutput(ModelOutput):
    """Per-token results for the labelled positions (zero elsewhere), shapes ``[B, T-1]``:
    ``log_probs`` of each next-token label, ``entropy`` of its distribution, ``is_top1`` whether
    the label is the most likely token, ``label_mask`` where a label is; ``loss`` their summed
    negative log-probability over ``num_items_in_batch`` (or the label count).
    The field names are those TRL's trainers read from a model with a fused LM head."""

    loss: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    is_top1: torch.Tensor | None = None
    label_mask: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


@dataclass
class _Tables:
    """Lookups derived from the catalogue buffer, built once per device."""

    tree: SidPrefixTree  # over SID token ids
    level_of_token: torch.Tensor  # long [V]: SID level of each token id, -1 for other tokens
    local_of_token: torch.Tensor  # long [V]: index of the token in its level's tree tokens
    level_tokens: tuple[torch.Tensor, ...]  # per level: long [V_l] token ids (tree order)
    children: tuple[torch.Tensor, ...]  # per level: long [nodes_l, V_l] child node, -1 if none
    text_tokens: torch.Tensor  # long [V_text]: every non-SID token but padding


@dataclass
class _Parsed:
    """A batch of prompts read as items (see :meth:`ItemSidModel._parse`)."""

    level: torch.Tensor  # long [B, T]: SID level of each token, -1 elsewhere (padding too)
    item_of: torch.Tensor  # long [B, T]: index of the last item started at or before t, -1 none
    items: torch.Tensor  # long [B, n, L+1]: SID token ids of each row's items, pad where none
    nodes: torch.Tensor  # long [B, n, L+2]: tree node after each item's first l tokens
    num_items: torch.Tensor  # long [B]: items per row
    real: torch.Tensor  # bool [B, T]: not padding


class ItemSidModel(PreTrainedModel, GenerationMixin):
    """See the module docstring. ``sid_token_ids``: long ``[N, L+1]`` buffer, item i's SID."""

    config_class = ItemSidConfig
    base_model_prefix = "item_sid"
    main_input_name = "input_ids"

    def __init__(self, config: ItemSidConfig) -> None:
        super().__init__(config)
        width = config.hidden_size
        self.token_embeddings = nn.Embedding(
            config.vocab_size, width, padding_idx=config.pad_token_id
        )
        self.item_embeddings = (
            nn.Embedding(config.num_items, width) if config.item_id_embeddings else None
        )
        # Row 0 of each table stands for "no such child" (and stays zero).
        self.node_output_embeddings = (
            nn.ModuleList(
                nn.Embedding(count + 1, width, padding_idx=0) for count in config.node_counts[1:]
            )
            if config.node_embeddings
            else None
        )
        self.position_embeddings = nn.Embedding(config.max_items + 1, width)
        self.input_dropout = nn.Dropout(config.dropout)
        block = nn.TransformerEncoderLayer(
            d_model=width,
            nhead=config.num_attention_heads,
            dim_feedforward=config.intermediate_size,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(
            block,
            config.num_hidden_layers,
            norm=nn.LayerNorm(width),
            enable_nested_tensor=False,
        )
        self.head_norm = nn.LayerNorm(width)
        depth = len(config.level_sizes)
        self.register_buffer(
            "sid_token_ids", torch.zeros((config.num_items, depth), dtype=torch.long)
        )
        self._tables_cache: dict[torch.device, _Tables] = {}
        self.post_init()

    # ------------------------------------------------------------------ catalogue

    def set_catalogue(self, sid_token_ids: torch.Tensor) -> None:
        """Store every item's SID token ids, long ``[N, L+1]`` (row i = item i)."""
        expected = tuple(self.sid_token_ids.shape)
        if tuple(sid_token_ids.shape) != expected:
            raise ValueError(
                f"catalogue of shape {tuple(sid_token_ids.shape)}, expected {expected}"
            )
        with torch.no_grad():
            self.sid_token_ids.copy_(sid_token_ids)
        self._tables_cache.clear()

    def _tables(self, device: torch.device) -> _Tables:
        if device not in self._tables_cache:
            tree = SidPrefixTree.from_codes(self.sid_token_ids.cpu().numpy())
            vocab = self.config.vocab_size
            level_of_token = torch.full((vocab,), -1, dtype=torch.long)
            local_of_token = torch.full((vocab,), -1, dtype=torch.long)
            for level, start in enumerate(self.config.level_starts):
                size = self.config.level_sizes[level]
                level_of_token[start : start + size] = level
                tokens = tree.level_tokens[level]
                local_of_token[tokens] = torch.arange(len(tokens))
            text = (level_of_token < 0) & (torch.arange(vocab) != self.config.pad_token_id)
            self._tables_cache[device] = _Tables(
                tree=tree,
                level_of_token=level_of_token.to(device),
                local_of_token=local_of_token.to(device),
                level_tokens=tuple(t.to(device) for t in tree.level_tokens),
                children=tuple(c.to(device) for c in tree.children),
                text_tokens=text.nonzero().squeeze(-1).to(device),
            )
        return self._tables_cache[device]

    # ------------------------------------------------------------------ reading prompts

    def _parse(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> _Parsed:
        tables = self._tables(input_ids.device)
        batch, _ = input_ids.shape
        depth = len(self.config.level_sizes)
        real = input_ids != self.config.pad_token_id
        if attention_mask is not None:
            real &= attention_mask.bool()
        level = tables.level_of_token[input_ids].masked_fill(~real, -1)
        starts = level == 0
        item_of = starts.long().cumsum(1) - 1
        num_items = starts.sum(1)
        width = int(num_items.max()) if batch else 0
        if width > self.config.max_items:
            raise ValueError(
                f"a prompt holds {width} items, more than the model's max_items "
                f"({self.config.max_items})"
            )
        items = input_ids.new_full((batch, width, depth), self.config.pad_token_id)
        rows, cols = (level >= 0).nonzero(as_tuple=True)
        items[rows, item_of[rows, cols], level[rows, cols]] = input_ids[rows, cols]
        # Walk the tree: nodes[:, :, l] is the node reached after an item's first l tokens.
        nodes = [torch.zeros((batch, width), dtype=torch.long, device=input_ids.device)]
        for depth_index in range(depth):
            local = tables.local_of_token[items[:, :, depth_index]]
            node = nodes[-1]
            ok = (node >= 0) & (local >= 0)
            child = tables.children[depth_index][node.clamp(min=0), local.clamp(min=0)]
            nodes.append(torch.where(ok, child, -1))
        return _Parsed(level, item_of, items, torch.stack(nodes, -1), num_items, real)

    def _states(self, input_ids: torch.Tensor, parsed: _Parsed) -> torch.Tensor:
        """User states ``[B, n+1, H]``: index j = after the first j items (0 = prompt head)."""
        embed = self.token_embeddings
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device)
        first_sid = torch.where(
            parsed.level.ge(0).any(1), parsed.level.ge(0).float().argmax(1), length
        )
        head = parsed.real & (positions < first_sid[:, None])
        first_real = parsed.real.float().argmax(1)
        task = embed(input_ids.gather(1, first_real[:, None])).squeeze(1)
        text = head & (positions != first_real[:, None])
        text_sum = (embed(input_ids) * text.unsqueeze(-1)).sum(1)
        prompt_head = task + text_sum / text.sum(1, keepdim=True).clamp(min=1)

        items = embed(parsed.items).sum(2)  # padding rows embed to zero
        if self.item_embeddings is not None:
            item_ids = parsed.nodes[:, :, -1]
            found = (item_ids >= 0).unsqueeze(-1)
            items = items + self.item_embeddings(item_ids.clamp(min=0)) * found
        inputs = torch.cat([prompt_head.unsqueeze(1), items], dim=1)
        steps = inputs.shape[1]
        inputs = inputs + self.position_embeddings(torch.arange(steps, device=inputs.device))
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=inputs.device)
        return self.blocks(self.input_dropout(inputs), mask=causal, is_causal=True)

    # ------------------------------------------------------------------ heads

    def level_logits(
        self, query: torch.Tensor, level: int, parent: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unnormalised scores ``[..., V_l]`` of level ``l``'s tokens (tree order) for queries
        ``[..., H]`` (a user state plus the embeddings of the codes chosen so far); ``parent``
        ``[...]``: the prefix's tree node, needed with ``node_embeddings`` (-1: none)."""
        tables = self._tables(query.device)
        query = self.head_norm(query)
        scores = query @ self.token_embeddings.weight[tables.level_tokens[level]].T
        if self.node_output_embeddings is not None and level > 0:
            if parent is None:
                raise ValueError("node embeddings need the parent node of every query")
            # Only existing children get a node term: a prefix has a few of the K codes below
            # it, so this gathers [pairs, H] rather than [..., V_l, H].
            child = tables.children[level][parent.clamp(min=0)].reshape(-1, scores.shape[-1])
            child = child.masked_fill((parent < 0).reshape(-1, 1), -1)
            rows, cols = (child >= 0).nonzero(as_tuple=True)
            nodes = self.node_output_embeddings[level - 1](child[rows, cols] + 1)
            extra = (nodes * query.reshape(-1, query.shape[-1])[rows]).sum(-1)
            flat = scores.reshape(-1, scores.shape[-1])
            scores = flat.index_put((rows, cols), flat[rows, cols] + extra).view(scores.shape)
        return scores

    def _text_logits(self, states: torch.Tensor) -> torch.Tensor:
        tokens = self._tables(states.device).text_tokens
        return self.head_norm(states) @ self.token_embeddings.weight[tokens].T

    def _chosen_codes(self, parsed: _Parsed) -> torch.Tensor:
        """``[B, n, L+1, H]``: for each item and level, the sum of its earlier levels'
        embeddings (exclusive prefix sum; zero at level 0)."""
        embedded = self.token_embeddings(parsed.items)
        return embedded.cumsum(2) - embedded

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        fused_lm_head: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs: Any,
    ) -> SidLogProbOutput | CausalLMOutput:
        """``input_ids``/``attention_mask`` long ``[B, T]``; ``labels`` ``[B, T]`` next-token
        targets (HF convention: the label at t is predicted at t-1; ``-100`` = no loss).

        ``fused_lm_head=True`` (with labels): :class:`SidLogProbOutput` for the labelled tokens
        only. Otherwise ``CausalLMOutput`` with full logits ``[B, T, V]`` (and the mean loss
        when labels are given). Other keyword arguments (``use_cache``...) are ignored: the
        model keeps no cache.
        """
        parsed = self._parse(input_ids, attention_mask)
        states = self._states(input_ids, parsed)
        if fused_lm_head:
            if labels is None:
                raise ValueError("fused_lm_head=True needs labels")
            return self._labelled(input_ids, labels, parsed, states, num_items_in_batch)
        logits = self._full_logits(input_ids, parsed, states)
        loss = None
        if labels is not None:
            loss = self._labelled(input_ids, labels, parsed, states, num_items_in_batch).loss
        return CausalLMOutput(loss=loss, logits=logits)

    def _labelled(self, input_ids, labels, parsed, states, num_items_in_batch) -> SidLogProbOutput:
        batch, length = input_ids.shape
        device = input_ids.device
        tables = self._tables(device)
        target = labels[:, 1:]
        mask = target != IGNORE
        log_probs = states.new_zeros((batch, length - 1))
        entropy = states.new_zeros((batch, length - 1))
        is_top1 = torch.zeros((batch, length - 1), dtype=torch.bool, device=device)
        level = tables.level_of_token[target.clamp(min=0)].masked_fill(~mask, -1)

        rows, cols = (level >= 0).nonzero(as_tuple=True)
        if len(rows):
            # A labelled SID token at t+1 belongs to the item that starts at or before t+1.
            item = parsed.item_of[:, 1:][rows, cols]
            lvl = level[rows, cols]
            chosen = self._chosen_codes(parsed)
            query = states[rows, item] + chosen[rows, item, lvl]
            node = parsed.nodes[rows, item, lvl]
            token = target[rows, cols]
            if (node < 0).any():
                bad = int((node < 0).nonzero()[0, 0])
                raise ValueError(
                    f"labelled tokens of row {int(rows[bad])} are not a catalogue SID prefix"
                )
            for sid_level in range(len(self.config.level_sizes)):
                at = (lvl == sid_level).nonzero().squeeze(-1)
                if len(at) == 0:
                    continue
                valid = tables.children[sid_level][node[at]] >= 0
                scores = self.level_logits(query[at], sid_level, node[at])
                scores = scores.masked_fill(~valid, -torch.inf)
                logp = scores.log_softmax(-1)
                local = tables.local_of_token[token[at]]
                picked = logp.gather(1, local[:, None]).squeeze(1)
                if not torch.isfinite(picked).all():
                    raise ValueError(
                        f"a labelled level-{sid_level} token is not a child of its prefix"
                    )
                r, c = rows[at], cols[at]
                log_probs = log_probs.index_put((r, c), picked)
                with torch.no_grad():
                    p = logp.exp()
                    entropy[r, c] = -(p * logp.masked_fill(~valid, 0.0)).sum(-1)
                    is_top1[r, c] = scores.argmax(-1) == local

        rows, cols = (mask & (level < 0)).nonzero(as_tuple=True)
        if len(rows):
            # A text label is read from the user after every item started before it.
            seen = parsed.item_of[:, :-1][rows, cols] + 1
            logp = self._text_logits(states[rows, seen]).log_softmax(-1)
            local = torch.searchsorted(tables.text_tokens, target[rows, cols])
            picked = logp.gather(1, local[:, None]).squeeze(1)
            log_probs = log_probs.index_put((rows, cols), picked)
            with torch.no_grad():
                entropy[rows, cols] = -(logp.exp() * logp).sum(-1)
                is_top1[rows, cols] = logp.argmax(-1) == local

        count = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = -log_probs.sum() / torch.as_tensor(count, device=device).clamp(min=1)
        return SidLogProbOutput(
            loss=loss, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=mask
        )

    def _full_logits(self, input_ids, parsed, states) -> torch.Tensor:
        """``[B, T, V]``: position t's next-token scores, ``-inf`` where impossible.

        Inside an item: the next level of that item. After an item's last token, or at a
        non-SID token followed by a SID start or by nothing: the next item's first level.
        Elsewhere (text): the text head.
        """
        batch, length = input_ids.shape
        device = input_ids.device
        tables = self._tables(device)
        depth = len(self.config.level_sizes)
        logits = states.new_full((batch, length, self.config.vocab_size), -torch.inf)
        level = parsed.level
        next_level = torch.full_like(level, -1)
        next_level[:, :-1] = level[:, 1:]
        last_real = parsed.real & ~torch.cat(
            [parsed.real[:, 1:], parsed.real.new_zeros((batch, 1))], 1
        )
        inside = (level >= 0) & (level < depth - 1)
        starts_next = parsed.real & ~inside & ((next_level == 0) | last_real)
        chosen = self._chosen_codes(parsed)
        seen = parsed.item_of + 1  # items started at or before t

        rows, cols = inside.nonzero(as_tuple=True)
        for sid_level in range(1, depth):
            at = (level[rows, cols] == sid_level - 1).nonzero().squeeze(-1)
            if len(at) == 0:
                continue
            r, c = rows[at], cols[at]
            item = parsed.item_of[r, c]
            query = states[r, item] + chosen[r, item, sid_level]
            node = parsed.nodes[r, item, sid_level]
            valid = (tables.children[sid_level][node.clamp(min=0)] >= 0) & (node >= 0)[:, None]
            scores = self.level_logits(query, sid_level, node).masked_fill(~valid, -torch.inf)
            logits[r[:, None], c[:, None], tables.level_tokens[sid_level][None, :]] = scores
        r, c = starts_next.nonzero(as_tuple=True)
        if len(r):
            scores = self.level_logits(states[r, seen[r, c]], 0)
            valid = tables.children[0][0] >= 0
            scores = scores.masked_fill(~valid, -torch.inf)
            logits[r[:, None], c[:, None], tables.level_tokens[0][None, :]] = scores
        r, c = (parsed.real & ~inside & ~starts_next).nonzero(as_tuple=True)
        if len(r):
            scores = self._text_logits(states[r, seen[r, c]])
            logits[r[:, None], c[:, None], tables.text_tokens[None, :]] = scores
        return logits

    # ------------------------------------------------------------------ decoding

    def sid_scorer(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ItemSidScorer:
        """The beam search's scorer for these prompts (see
        :class:`deepinterestgr.recommender.constrained_decoding.LevelScorer`)."""
        parsed = self._parse(input_ids, attention_mask)
        states = self._states(input_ids, parsed)
        last = states[torch.arange(len(states), device=states.device), parsed.num_items]
        return ItemSidScorer(self, last)


class ItemSidScorer:
    """Scores the beams of one batch of prompts level by level, with no model call after the
    prompt: a beam's query is the user state plus its chosen codes' embeddings, and its tree
    node is followed in the model's own prefix tree."""

    def __init__(self, model: ItemSidModel, states: torch.Tensor) -> None:
        self.model = model
        self.queries = states.unsqueeze(1)  # [B, 1, H]: one beam before the first level
        self.nodes = torch.zeros(self.queries.shape[:2], dtype=torch.long, device=states.device)
        self.level = 0

    def log_probs(self, level_tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, k, V_l]`` log-probabilities of this level's tokens ``level_tokens`` (the search
        tree's order), normalised over each beam's valid children ``valid`` ``[B, k, V_l]``."""
        tables = self.model._tables(self.queries.device)
        scores = self.model.level_logits(self.queries, self.level, self.nodes)
        local = tables.local_of_token[level_tokens]
        if (local < 0).any():
            raise ValueError("the search tree has SID tokens the model's catalogue lacks")
        scores = scores[..., local].float().masked_fill(~valid, -torch.inf)
        return scores.log_softmax(-1).nan_to_num(nan=-torch.inf)

    def advance(self, parent: torch.Tensor, chosen_tokens: torch.Tensor) -> None:
        """Keep beams ``parent`` ``[B, k']`` and append their new tokens ``[B, k']``."""
        tables = self.model._tables(self.queries.device)
        kept = self.queries.gather(1, parent.unsqueeze(-1).expand(-1, -1, self.queries.shape[-1]))
        self.queries = kept + self.model.token_embeddings(chosen_tokens)
        nodes = self.nodes.gather(1, parent)
        local = tables.local_of_token[chosen_tokens]
        child = tables.children[self.level][nodes.clamp(min=0), local.clamp(min=0)]
        self.nodes = torch.where((nodes >= 0) & (local >= 0), child, -1)
        self.level += 1


AutoConfig.register(ItemSidConfig.model_type, ItemSidConfig)
AutoModelForCausalLM.register(ItemSidConfig, ItemSidModel)
