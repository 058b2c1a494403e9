"""Beam search constrained to valid Semantic IDs by a prefix tree (METHOD.md, evaluation).

Every item's SID is ``T = L+1`` tokens. :class:`SidPrefixTree` stores, per depth ``d``, the
distinct tokens seen there (``level_tokens[d]``, ``V_d`` of them) and a dense transition table
``children[d]`` long ``[nodes_d, V_d]``: the child node of each (node, token) pair, ``-1`` where
no valid SID continues that way; at the last depth the entry is the item id. Masking a batch of
beams is then one gather, with no Python per beam.

:func:`constrained_beam_search` is its own loop over the ``T`` levels: the prompt is encoded
once per user (not once per beam), each step scores only the tokens of that level, and the
model's ``generation_config`` is never read, so nothing can switch sampling on. Beams follow
distinct tree paths, so the returned items are valid and distinct by construction.

The model is asked for each level's log-probabilities through a :class:`LevelScorer`. A model
with a ``sid_scorer`` method brings its own (the item-level model: a softmax over each prefix's
children, no model call after the prompt); any other causal LM gets :class:`CausalLmScorer`, a
KV cache and full-vocabulary log-probabilities, the quantity that transformers'
``generate(num_beams=..., prefix_allowed_tokens_fn=...)`` ranks by with ``length_penalty=0``.
A beam's score is the sum of its levels' log-probabilities.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SidPrefixTree:
    """All valid SIDs as a tree over token ids.

    ``level_tokens[d]``: long ``[V_d]`` sorted distinct token ids at depth ``d``.
    ``children[d]``: long ``[nodes_d, V_d]`` child node index at depth ``d+1`` (item id at the
    last depth), ``-1`` if not allowed. Depth 0 has the single root node 0.
    ``item_nodes``: long ``[N, T]``, column d: the depth-``d+1`` node on item i's path (the
    last column is the item id). ``leaf_counts[d]``: long ``[nodes_{d+1}]`` items below each
    depth-``d+1`` node (all ones at the last depth).
    """

    level_tokens: tuple[torch.Tensor, ...]
    children: tuple[torch.Tensor, ...]
    item_nodes: torch.Tensor
    leaf_counts: tuple[torch.Tensor, ...]
    num_items: int

    @property
    def depth(self) -> int:
        return len(self.level_tokens)

    @classmethod
    def from_codes(cls, token_ids: np.ndarray | torch.Tensor) -> SidPrefixTree:
        """Build the tree from every item's SID token ids, int ``[N, T]`` (row i = item i).

        Fails if two items share a SID (the collision suffix should make them unique).
        """
        tokens = np.asarray(token_ids, dtype=np.int64)
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise ValueError(f"token_ids must be a non-empty [N, T] array, got {tokens.shape}")
        num_items, depth = tokens.shape
        node = np.zeros(num_items, dtype=np.int64)  # each item's node at the current depth
        num_nodes = 1
        level_tokens, children, item_nodes, leaf_counts = [], [], [], []
        for d in range(depth):
            vocab, local = np.unique(tokens[:, d], return_inverse=True)
            if d + 1 < depth:
                # A child is a distinct (parent node, token) pair.
                keys, child = np.unique(node * len(vocab) + local, return_inverse=True)
                child_count = len(keys)
            else:
                child = np.arange(num_items)
                keys, first, counts = np.unique(
                    node * len(vocab) + local, return_index=True, return_counts=True
                )
                if (counts > 1).any():
                    dup = first[np.argmax(counts > 1)]
                    raise ValueError(
                        f"item {dup} shares its SID {tokens[dup].tolist()} with another"
                    )
            table = np.full((num_nodes, len(vocab)), -1, dtype=np.int64)
            table[node, local] = child
            level_tokens.append(torch.from_numpy(vocab))
            children.append(torch.from_numpy(table))
            item_nodes.append(child)
            leaf_counts.append(torch.from_numpy(np.bincount(child, minlength=child.max() + 1)))
            if d + 1 < depth:
                node, num_nodes = child, child_count
        return cls(
            tuple(level_tokens),
            tuple(children),
            torch.from_numpy(np.stack(item_nodes, axis=1)),
            tuple(leaf_counts),
            num_items,
        )

    def blocked_nodes(self, exclude: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """Per depth ``d``, keys ``row * nodes_{d+1} + node`` of the depth-``d+1`` nodes whose
        items are all in ``exclude[row]`` (long, sorted; at the last depth: the items).

        A beam entering such a node could only end on excluded items, so the search masks it
        as early as possible instead of losing the beam at the last step.
        """
        rows = torch.tensor([r for r, items in enumerate(exclude) for _ in set(items)])
        items = torch.tensor([i for items in exclude for i in set(items)], dtype=torch.long)
        blocked = []
        for d in range(self.depth):
            if len(items) == 0:
                blocked.append(torch.zeros(0, dtype=torch.long))
                continue
            nodes = self.item_nodes[items, d]
            width = len(self.leaf_counts[d])
            keys, counts = torch.unique(rows * width + nodes, return_counts=True)
            blocked.append(keys[counts == self.leaf_counts[d][keys % width]])
        return tuple(blocked)

    def allowed_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Token ids that may follow the SID ``prefix`` (token ids, ``len < T``); [] if none."""
        node = 0
        for d, token in enumerate(prefix):
            local = int(torch.searchsorted(self.level_tokens[d], token))
            if local >= len(self.level_tokens[d]) or self.level_tokens[d][local] != token:
                return []
            node = int(self.children[d][node, local])
            if node < 0:
                return []
        if len(prefix) >= self.depth:
            return []
        allowed = self.children[len(prefix)][node] >= 0
        return self.level_tokens[len(prefix)][allowed].tolist()

    def item_of(self, sid: Sequence[int]) -> int:
        """Item id of a complete SID given as token ids, or -1 if it is not a valid SID."""
        if len(sid) != self.depth:
            return -1
        node = 0
        for d, token in enumerate(sid):
            local = int(torch.searchsorted(self.level_tokens[d], token))
            if local >= len(self.level_tokens[d]) or self.level_tokens[d][local] != token:
                return -1
            node = int(self.children[d][node, local])
            if node < 0:
                return -1
        return node


class BeamResult(NamedTuple):
    """Ranked items per prompt, best first.

    ``item_ids`` long ``[B, K]`` (-1 where fewer than K allowed items exist), ``scores`` float
    ``[B, K]`` (sum of the SID tokens' log-probabilities; -inf for -1), ``token_ids`` long
    ``[B, K, T]`` (the SID tokens of each beam).
    """

    item_ids: torch.Tensor
    scores: torch.Tensor
    token_ids: torch.Tensor


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"prompt {row} is empty")
        ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


@torch.no_grad()
def constrained_beam_search(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    tree: SidPrefixTree,
    num_beams: int,
    pad_token_id: int,
    exclude: Sequence[Sequence[int]] | None = None,
) -> BeamResult:
    """Top-``num_beams`` valid SIDs per prompt by beam search over the prefix tree.

    ``prompts``: B lists of token ids (left-padded here). ``exclude``: per prompt, item ids that
    may not be returned (e.g. the user's history); every tree node whose items are all
    excluded is masked, so no beam is spent on a dead end.
    Deterministic beam search whatever the model's generation config says; the model is run in
    eval mode and restored to its previous mode.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, found {num_beams}")
    if exclude is not None and len(exclude) != len(prompts):
        raise ValueError(f"exclude has {len(exclude)} rows for {len(prompts)} prompts")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return _search(model, prompts, tree, num_beams, pad_token_id, exclude, device)
    finally:
        model.train(was_training)


def _search(model, prompts, tree, num_beams, pad_token_id, exclude, device) -> BeamResult:
    batch = len(prompts)
    ids, mask = _left_pad(prompts, pad_token_id)
    ids, mask = ids.to(device), mask.to(device)
    scorer = (
        model.sid_scorer(ids, mask)
        if hasattr(model, "sid_scorer")
        else CausalLmScorer(model, ids, mask)
    )
    blocked = [b.to(device) for b in tree.blocked_nodes(exclude)] if exclude else None

    # Beam state, [B, k] with k = 1 before the first step.
    node = torch.zeros((batch, 1), dtype=torch.long, device=device)
    scores = torch.zeros((batch, 1), device=device)
    tokens = torch.zeros((batch, 1, 0), dtype=torch.long, device=device)
    for d in range(tree.depth):
        level_tokens = tree.level_tokens[d].to(device)
        width = len(level_tokens)
        beams = node.shape[1]
        child = tree.children[d].to(device)[node.clamp(min=0)]
        child = torch.where(node.unsqueeze(-1) >= 0, child, -1)
        log_probs = scorer.log_probs(level_tokens, child >= 0)  # [B, k, V_d]
        candidate = torch.where(child >= 0, log_probs + scores.unsqueeze(-1), -torch.inf)
        if blocked is not None and len(blocked[d]):
            width_next = len(tree.leaf_counts[d])
            rows = torch.arange(batch, device=device).view(-1, 1, 1)
            hit = torch.isin(rows * width_next + child.clamp(min=0), blocked[d]) & (child >= 0)
            candidate = candidate.masked_fill(hit, -torch.inf)
        keep = min(num_beams, beams * width)
        scores, flat = candidate.view(batch, -1).topk(keep, dim=-1)
        parent = flat // width
        node = child.view(batch, -1).gather(1, flat)
        node = torch.where(torch.isfinite(scores), node, -1)
        chosen = level_tokens[flat % width]
        tokens = torch.cat([_rows(tokens, parent), chosen.unsqueeze(-1)], -1)
        if d + 1 == tree.depth:
            break
        scorer.advance(parent, chosen)

    if node.shape[1] < num_beams:  # a catalogue smaller than the beam count
        missing = num_beams - node.shape[1]
        node = torch.cat([node, node.new_full((batch, missing), -1)], dim=1)
        scores = torch.cat([scores, scores.new_full((batch, missing), -torch.inf)], dim=1)
        tokens = torch.cat([tokens, tokens.new_full((batch, missing, tree.depth), -1)], dim=1)
    return BeamResult(node.cpu(), scores.cpu(), tokens.cpu())


class LevelScorer(Protocol):
    """What the beam search asks of a model, one object per batch of prompts.

    ``log_probs(level_tokens, valid)``: ``[B, k, V_d]`` log-probabilities of the current level's
    tokens ``level_tokens`` (long ``[V_d]``) for each of the k beams; ``valid`` (bool, same
    shape) marks each beam's children in the prefix tree, for a model that normalises over them.
    ``advance(parent, chosen)``: keep beams ``parent`` ``[B, k']`` extended by the tokens
    ``chosen`` ``[B, k']``. A model provides its own scorer with a ``sid_scorer(ids, mask)``
    method (:class:`deepinterestgr.recommender.item_sid_model.ItemSidModel`); any causal LM gets
    :class:`CausalLmScorer`.
    """

    def log_probs(self, level_tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor: ...

    def advance(self, parent: torch.Tensor, chosen: torch.Tensor) -> None: ...


class CausalLmScorer:
    """A causal LM's next-token log-probabilities (full-vocabulary softmax, as ``generate``),
    one forward step per SID level on a shared prompt cache (see :func:`_extend_beams`)."""

    def __init__(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.model = model
        self.mask = mask
        self.positions = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=self.positions, use_cache=True, **extra
        )
        self.logits = out.logits[:, -1]
        self.cache = {_cache_argument(model): _returned_cache(out)}
        batch = len(ids)
        # ``slots`` [B, k, d]: where each beam's SID tokens sit in the generated part of the
        # KV cache; ``cached``: SID tokens in that part, per user.
        self.slots = torch.zeros((batch, 1, 0), dtype=torch.long, device=ids.device)
        self.cached = 0

    def log_probs(self, level_tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, beams = valid.shape[:2]
        logits = self.logits.float().view(batch, beams, -1)
        return logits[..., level_tokens] - torch.logsumexp(logits, dim=-1, keepdim=True)

    def advance(self, parent: torch.Tensor, chosen: torch.Tensor) -> None:
        self.slots = torch.cat([_rows(self.slots, parent), self.cached + _arange_like(parent)], -1)
        self.logits = _extend_beams(
            self.model, self.cache, chosen, self.slots, self.mask, self.positions[:, -1]
        )
        self.cached += parent.shape[1]


def _rows(state: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """``state`` [B, k, d] of the parent beams, for the new beams ``parent`` [B, k']."""
    return state.gather(1, parent.unsqueeze(-1).expand(-1, -1, state.shape[-1]))


def _arange_like(parent: torch.Tensor) -> torch.Tensor:
    return torch.arange(parent.shape[1], device=parent.device).expand_as(parent).unsqueeze(-1)


def _extend_beams(model, cache_kwargs, last, slots, prompt_mask, last_position) -> torch.Tensor:
    """Feed each beam's newest SID token ``last`` [B, k]; return next-token logits [B*k, V].

    The k beams of a user are one row of k tokens on top of that user's single copy of the
    prompt cache (``generate`` copies the prompt cache per beam and reorders it every step: k
    times the memory traffic). Earlier SID tokens of all beams stay in the cache, and a block
    mask lets a beam see only the prompt and its own ancestors (``slots`` [B, k, d] indexes
    them in the generated part, the newest being the token fed now). ``cache_kwargs`` passes the
    KV cache under the model's argument name.
    """
    batch, beams = last.shape
    generated = int(slots.max()) + 1  # cached SID tokens, this step's included
    ancestors = torch.zeros((batch, beams, generated), dtype=torch.bool, device=last.device)
    ancestors.scatter_(2, slots, True)
    allowed = torch.cat([prompt_mask.bool()[:, None, :].expand(-1, beams, -1), ancestors], dim=-1)
    dtype = next(model.parameters()).dtype
    attention = torch.zeros(allowed.shape, dtype=dtype, device=last.device)
    attention.masked_fill_(~allowed, torch.finfo(dtype).min)
    depth = slots.shape[-1]
    out = model(
        input_ids=last,
        attention_mask=attention[:, None],
        position_ids=(last_position[:, None] + depth).expand(-1, beams),
        use_cache=True,
        **cache_kwargs,
    )
    return out.logits.reshape(batch * beams, -1)


# transformers renamed the KV cache from ``past_key_values`` to ``cache`` in 5.2x (argument and
# output field); both spellings are supported so older installs decode too.
def _cache_argument(model: torch.nn.Module) -> str:
    return "cache" if _accepts(model, "cache") else "past_key_values"


def _returned_cache(out):
    return out.cache if hasattr(out, "cache") else out.past_key_values


def _accepts(model: torch.nn.Module, argument: str) -> bool:
    # The class's forward: a trainer may have patched the instance's with a narrower signature.
    return argument in inspect.signature(type(model).forward).parameters


def rank_items(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    tree: SidPrefixTree,
    num_beams: int,
    pad_token_id: int,
    batch_size: int,
    exclude: Sequence[Sequence[int]] | None = None,
    progress: str | None = None,
) -> BeamResult:
    """:func:`constrained_beam_search` over many prompts in batches of ``batch_size``.

    Prompts are sorted by length so each batch pads little; results come back in input order.
    ``progress`` is the label of a progress bar (None: no bar).
    """
    order = np.argsort([len(p) for p in prompts], kind="stable")
    parts = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc=progress, disable=progress is None, unit="batch"):
        chosen = order[start : start + batch_size]
        parts.append(
            constrained_beam_search(
                model,
                [prompts[i] for i in chosen],
                tree,
                num_beams,
                pad_token_id,
                [exclude[i] for i in chosen] if exclude is not None else None,
            )
        )
    inverse = torch.as_tensor(np.argsort(order, kind="stable"))
    return BeamResult(*(torch.cat(field)[inverse] for field in zip(*parts, strict=True)))


def prefix_allowed_tokens_fn(tree: SidPrefixTree, prompt_width: int):
    """transformers' ``generate(prefix_allowed_tokens_fn=...)`` callback for the same tree.

    The reference path (one Python call per beam and step), kept for comparison and tests.
    ``prompt_width``: the padded prompt length, so ``input_ids[prompt_width:]`` is the SID so far.
    """

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        return tree.allowed_tokens(input_ids[prompt_width:].tolist())

    return allowed
