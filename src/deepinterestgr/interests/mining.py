"""Multi-LLM interest mining (MLIM, METHOD.md): run every configured backend, then merge.

Backends, in the order params list them:

- a name in ``mine.llms``: an LLM (Anthropic, OpenAI or an OpenAI-compatible server) asked
  with the ``item_text`` prompt per item, the ``item_image`` prompt per item with an image
  (``images: true``) and the ``user_history`` prompt per user (``users: true``; training
  items only). The text and image variants count as two miners in provenance
  (``claude:model`` and ``claude:model+image``), as the paper's multimodal variants do.
- ``offline``: no network, deterministic (:mod:`deepinterestgr.interests.offline_miner`).
- ``precomputed``: descriptors mined elsewhere (:mod:`deepinterestgr.interests.precomputed`).

Every backend's descriptors are screened first (:mod:`deepinterestgr.interests.descriptor_screen`):
links, instructions and text echoed from an instruction injected into the item's data are
dropped and listed in :attr:`MineOutput.rejected` with the reason.

Per item, every backend's descriptors are merged by :mod:`deepinterestgr.interests.merge`
(normalise, deduplicate by string and embedding similarity, keep which models agree). User
interests: the training-history aggregate of the merged item interests
(:func:`~deepinterestgr.interests.offline_miner.mine_users_offline`), merged with any LLM
user-history answers. Nothing here reads a validation or test item.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from deepinterestgr.common.errors import PipelineError
from deepinterestgr.common.io import Interest, Item, ItemInterests, UserInterests, UserSequence
from deepinterestgr.common.params import LLMParams, MineParams, raise_problems
from deepinterestgr.interests import merge as interest_merge
from deepinterestgr.interests import offline_miner, precomputed
from deepinterestgr.interests.descriptor_screen import (
    Evidence,
    Rejection,
    history_evidence,
    item_evidence,
    screen_rows,
)
from deepinterestgr.interests.prompts import (
    item_image_prompt,
    item_text_prompt,
    load_image,
    user_history_prompt,
    version_problems,
)
from deepinterestgr.llm.backends import MissingKeyError, read_api_key, settings_problems
from deepinterestgr.llm.cache import AnswerCache
from deepinterestgr.llm.runner import Job, Outcome, RunResult, run_jobs

log = logging.getLogger(__name__)

OFFLINE = "offline"
PRECOMPUTED = "precomputed"


class MiningFailed(RuntimeError, PipelineError):
    """A backend failed on more jobs than ``mine.max_failure_rate`` allows, or hit the cap."""


@dataclass(frozen=True)
class MineOutput:
    items: list[ItemInterests]  # one per item, item_id order, merged across backends
    users: list[UserInterests]  # one per user, user_id order
    raw: dict[str, tuple[Outcome, ...]]  # LLM backend name -> its answers (reasoning, texts)
    stats: dict[str, dict[str, Any]]  # backend name -> counters (tokens, cost, failures)
    rejected: list[Rejection] = field(default_factory=list)  # descriptors screened out


def build_jobs(
    llm: LLMParams,
    params: MineParams,
    items: Sequence[Item],
    users: Sequence[UserSequence],
    image_dir: str | Path,
) -> list[Job]:
    """The requests one LLM backend makes: item text, item image, user history prompts."""
    jobs = [
        Job(
            "item",
            item.item_id,
            item_text_prompt(
                item, params.prompts.item_text, params.max_descriptors, params.max_description_chars
            ),
        )
        for item in items
    ]
    if llm.images:
        for item in items:
            image = load_image(item.image, image_dir)
            if image is not None:
                prompt = item_image_prompt(
                    item, image, params.prompts.item_image, params.max_descriptors
                )
                jobs.append(Job("item", item.item_id, prompt))
    if llm.users:
        for user in users:
            history = [items[i] for i in user.train]  # training part only: no leakage
            if history:
                prompt = user_history_prompt(
                    history,
                    params.prompts.user_history,
                    params.max_descriptors,
                    params.max_history_items,
                )
                jobs.append(Job("user", user.user_id, prompt))
    return jobs


def model_tag(name: str, llm: LLMParams, job: Job) -> str:
    """Provenance name of one miner: backend name, model, and the image variant."""
    suffix = "+image" if job.prompt.kind == "item_image" else ""
    return f"{name}:{llm.model}{suffix}"


def _collect(
    result: RunResult, name: str, llm: LLMParams
) -> tuple[list[list[ItemInterests]], list[UserInterests]]:
    """Answered interests as rows, one row list per item miner (text, image) and one for
    users; failed jobs contribute nothing."""
    item_rows: dict[str, list[ItemInterests]] = {}
    user_rows: list[UserInterests] = []
    for outcome in result.outcomes:
        job = outcome.job
        if not outcome.ok:
            continue
        tag = model_tag(name, llm, job)
        interests = tuple(
            Interest(d["descriptor"], float(d["confidence"]), (tag,))
            for d in outcome.record.fields["interests"]
        )
        if job.target == "item":
            item_rows.setdefault(tag, []).append(ItemInterests(job.target_id, interests))
        else:
            user_rows.append(UserInterests(job.target_id, interests))
    return list(item_rows.values()), user_rows


def mining_problems(params: MineParams) -> Iterator[tuple[str, str]]:
    """``(key, message)`` for ``mine`` params that only the LLM and prompt modules can judge:
    what each backend's provider needs, and whether each chosen prompt version exists. The
    params stage checks them before any other stage; :func:`mine_interests` again."""
    for name, settings in params.llms.items():
        for key, message in settings_problems(settings):
            yield f"llms.{name}.{key}", message
    for kind, message in version_problems(params.prompts):
        yield f"prompts.{kind}", message


def check_keys(params: MineParams) -> None:
    """Every LLM backend in ``params.backends`` has its API key: checked before any request,
    so a missing second key does not surface after the first backend was paid for."""
    missing = []
    for name in params.backends:
        if name in params.llms:
            try:
                read_api_key(params.llms[name])
            except MissingKeyError as err:
                missing.append(f"{name} ({err})")
    if missing:
        raise MissingKeyError(f"mine.backends: no API key for {'; '.join(missing)}")


def _check(
    name: str, result: RunResult, spent: float, params: MineParams, answer_cache: Path
) -> None:
    stats = result.stats
    retry = (
        f"failed answers are cached and asked again on the next {params.failed_retries} "
        "run(s) (mine.failed_retries)"
    )
    if result.cap_reached:
        not_asked = stats.jobs - stats.ok - stats.failed
        raise MiningFailed(
            f"{name}: spending cap reached: ${spent:.4f} spent this run of "
            f"mine.spending_cap_usd=${params.spending_cap_usd:.2f} (all backends); "
            f"{not_asked:,} jobs not asked, the next could cost up to "
            f"${result.next_job_bound_usd:.4f}; answers so far are cached in {answer_cache}; "
            "raise mine.spending_cap_usd and rerun to continue"
        )
    if result.stopped is not None:
        not_asked = stats.jobs - stats.ok - stats.failed
        raise MiningFailed(
            f"{name}: stopped early: {result.stopped} (mine.max_consecutive_failures="
            f"{params.max_consecutive_failures}); {not_asked:,} of {stats.jobs:,} jobs not "
            f"asked, ${stats.cost_usd:.4f} spent; fix the backend and rerun: {retry}"
        )
    rate = stats.failed / stats.jobs if stats.jobs else 0.0
    if rate > params.max_failure_rate:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in stats.failure_reasons.most_common(5))
        final = (
            f"; {result.exhausted:,} of them failed on every allowed re-ask (raise "
            "mine.failed_retries to ask them again)"
            if result.exhausted
            else ""
        )
        raise MiningFailed(
            f"{name}: {stats.failed:,} of {stats.jobs:,} jobs failed ({rate:.1%} > "
            f"mine.max_failure_rate {params.max_failure_rate:.1%}); reasons: {reasons}; "
            f"{retry}{final}"
        )


def mine_interests(
    params: MineParams,
    items: Sequence[Item],
    users: Sequence[UserSequence],
    image_dir: str | Path,
    answer_cache: str | Path,
    seed: int,
) -> MineOutput:
    """Run ``params.backends`` and merge their interests (see the module docstring); LLM
    answers are read from and added to ``answer_cache`` (a rerun pays only for what is new)."""
    item_sources: list[list[ItemInterests]] = []  # one row list per miner
    user_sources: list[list[UserInterests]] = []
    rejected: list[Rejection] = []
    evidence: dict[int, Evidence] = {}

    def of_item(item_id: int) -> Evidence:
        if item_id not in evidence:
            evidence[item_id] = item_evidence(items[item_id])
        return evidence[item_id]

    def of_user(user_id: int) -> Evidence:
        return history_evidence(items[i] for i in users[user_id].train)

    def screened(rows: list[Any], target: Literal["item", "user"]) -> list[Any]:
        kept, dropped = screen_rows(rows, target, of_item if target == "item" else of_user)
        rejected.extend(dropped)
        return kept

    raw: dict[str, tuple[Outcome, ...]] = {}
    stats: dict[str, dict[str, Any]] = {}
    raise_problems("mine", mining_problems(params))
    check_keys(params)
    cache = AnswerCache(answer_cache)
    spent = 0.0
    for name in params.backends:
        started = time.monotonic()
        if name in (OFFLINE, PRECOMPUTED):
            if name == OFFLINE:
                rows = offline_miner.mine_items_offline(
                    items, users, params.max_descriptors, params.encoder, params.offline
                )
            else:
                rows = precomputed.read_precomputed(
                    params.precomputed.path, items, params.precomputed.model_name
                )
            item_sources.append(screened(rows, "item"))
            stats[name] = {
                "jobs": len(rows),
                "ok": sum(bool(r.interests) for r in rows),
                "failed": 0,
                "cost_usd": 0.0,
                "wall_s": round(time.monotonic() - started, 3),
            }
            continue
        if name not in params.llms:
            known = ", ".join([OFFLINE, PRECOMPUTED, *params.llms])
            raise ValueError(f"mine.backends: unknown backend '{name}' (known: {known})")
        llm = params.llms[name]
        jobs = build_jobs(llm, params, items, users, image_dir)
        cap_left = params.spending_cap_usd - spent
        if llm.batch:
            from deepinterestgr.llm.batches import run_batch

            result = run_batch(
                jobs,
                name,
                llm,
                cache,
                cap_left,
                Path(answer_cache),
                failed_retries=params.failed_retries,
            )
        else:
            result = run_jobs(
                jobs,
                name,
                llm,
                cache,
                cap_left,
                seed,
                failed_retries=params.failed_retries,
                max_consecutive_failures=params.max_consecutive_failures,
            )
        spent += result.stats.cost_usd
        miners, user_rows = _collect(result, name, llm)
        raw[name] = result.outcomes
        item_sources.extend(screened(rows, "item") for rows in miners)
        user_sources.append(screened(user_rows, "user"))
        stats[name] = result.stats.as_dict()
        log.info(
            "%s: %s jobs, %s cached, %s failed, %s tokens in, %s out, $%.4f",
            name,
            f"{result.stats.jobs:,}",
            f"{result.stats.cached:,}",
            f"{result.stats.failed:,}",
            f"{result.stats.input_tokens:,}",
            f"{result.stats.output_tokens:,}",
            result.stats.cost_usd,
        )
        _check(name, result, spent, params, Path(answer_cache))

    all_offline = set(params.backends) <= {OFFLINE}
    merged = _merge(item_sources, params, interest_merge.merge_many)
    item_rows = _complete(merged, len(items), all_offline, ItemInterests)
    # Every user gets the training-history aggregate of the merged item interests, merged
    # with what LLMs read directly from the (training) history.
    aggregated = offline_miner.mine_users_offline(
        users, item_rows, params.max_descriptors, params.user_half_life
    )
    merged_users = _merge([aggregated, *user_sources], params, interest_merge.merge_many_users)
    user_rows = _complete(merged_users, len(users), all_offline, UserInterests)
    if rejected:
        reasons = Counter(r.reason for r in rejected)
        log.warning(
            "screened out %s descriptors (%s) of %s items and %s users",
            f"{len(rejected):,}",
            ", ".join(f"{k}: {v:,}" for k, v in reasons.most_common()),
            f"{len({r.target_id for r in rejected if r.target == 'item'}):,}",
            f"{len({r.target_id for r in rejected if r.target == 'user'}):,}",
        )
    return MineOutput(item_rows, user_rows, raw, stats, rejected)


def _merge(sources: list[list[Any]], params: MineParams, merge_many: Any) -> list[Any]:
    """Merge rows across miners; a single miner is already deduplicated and ordered."""
    sources = [rows for rows in sources if rows]
    if len(sources) == 1:
        return [
            replace(row, interests=row.interests[: params.max_descriptors]) for row in sources[0]
        ]
    return merge_many(
        sources,
        params.max_descriptors,
        params.merge_similarity,
        params.encoder,
        params.merge_batch_size,
    )


def _complete(rows: Sequence[Any], count: int, offline: bool, cls: type) -> list[Any]:
    """One row per id 0..count-1: ids no backend answered get an empty interest list."""
    by_id = {_row_id(row): row for row in rows}
    return [by_id.get(i) or cls(i, (), offline) for i in range(count)]


def _row_id(row: ItemInterests | UserInterests) -> int:
    return row.item_id if isinstance(row, ItemInterests) else row.user_id


def summary(output: MineOutput) -> dict[str, Any]:
    """The stage's metrics: coverage, descriptors per row, model agreement, cost per backend."""
    item_interests = [i for row in output.items for i in row.interests]
    return {
        "items": len(output.items),
        "users": len(output.users),
        "items_without_interests": sum(not row.interests for row in output.items),
        "users_without_interests": sum(not row.interests for row in output.users),
        "descriptors_per_item": round(len(item_interests) / max(1, len(output.items)), 4),
        # Agreement: how many miners proposed a kept item descriptor (1 = one miner only).
        "models_per_descriptor": round(
            sum(len(i.models) for i in item_interests) / max(1, len(item_interests)), 4
        ),
        "cost_usd": round(sum(s.get("cost_usd", 0.0) for s in output.stats.values()), 6),
        # Descriptors dropped by the injection screen, per reason (data/mine/rejected.jsonl).
        "rejected": dict(Counter(r.reason for r in output.rejected).most_common()),
        "backends": output.stats,
    }
