"""Batch mode: answer mining jobs through the providers' batch APIs, resumable by batch id.

For big catalogues the Anthropic Message Batches API and the OpenAI Batch API answer the
same requests asynchronously (hours, at a discount; the cost estimate here uses the live
prices, an upper bound). One batch per backend at a time:

1. Jobs already in the answer cache are served from it (a failed answer is asked again on up
   to ``failed_retries`` later runs, as in :mod:`deepinterestgr.llm.runner`).
2. If ``<state_dir>/batches/<backend>.json`` names a batch from an earlier, interrupted run,
   that batch is polled to its end and its answers cached first (nothing is paid twice).
3. The still-missing jobs go out as one new batch; its id is written to the state file
   *before* polling starts, so a killed run resumes the same batch. Only the jobs whose cost
   bound (:meth:`Runner.job_cost_bound`, repair included) fits under the spending cap go in.
4. Every result passes the same checks as a live answer (:meth:`Runner.resolve`), with one
   live repair turn if unusable. Errored or expired requests are not cached (the next run
   asks again).

The custom id of each request is its cache key (64 hex characters, within both providers'
limits), so a result finds its job without any other bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from deepinterestgr.common.io import write_json
from deepinterestgr.llm import backends as llm_backends
from deepinterestgr.llm.cache import AnswerCache
from deepinterestgr.llm.prompt import Prompt
from deepinterestgr.llm.records import AnswerRecord, Record
from deepinterestgr.llm.runner import (
    Job,
    Outcome,
    Runner,
    RunnerSettings,
    RunResult,
    asks_again,
    cached_record,
    job_key,
)

log = logging.getLogger(__name__)


class BatchSettings(RunnerSettings, Protocol):
    batch_poll_s: float


def _state_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "batches" / f"{name}.json"


async def _run_batch(
    client: Any,
    runner: Runner,
    settings: BatchSettings,
    prompts: dict[str, Prompt],
    state: Path,
    batch_id: str,
    attempts: dict[str, int],
) -> dict[str, AnswerRecord]:
    """Poll ``batch_id`` to its end; cache and return key -> record of its answers."""
    provider = runner.provider
    batch = await llm_backends.wait_for_batch(client, settings, batch_id, settings.batch_poll_s)
    answers = await provider.batch_results(client, batch)
    records = {}
    for key, response in answers.items():
        if response is None or key not in prompts:
            continue
        completion = provider.parse(response)
        runner.count_usage(completion)
        record = await runner.resolve(prompts[key], completion)
        record = replace(record, attempts=attempts.get(key, 0) + 1)
        runner.cache.put(key, record.to_json())
        records[key] = record
    os.unlink(state)
    log.info("%s: batch %s ended, %s answers cached", runner.name, batch_id, f"{len(records):,}")
    return records


async def run_batch_async(
    jobs: Sequence[Job],
    name: str,
    settings: BatchSettings,
    cache: AnswerCache,
    spending_cap_usd: float,
    state_dir: Path,
    client: Any = None,
    failed_retries: int = 0,
) -> RunResult:
    """Answer ``jobs`` through the provider's batch API (see the module docstring)."""
    if not llm_backends.provider_of(settings).has_batches:
        batched = ", ".join(p.name for p in llm_backends.PROVIDERS.values() if p.has_batches)
        raise ValueError(
            f"{name}: batch mode needs a provider with a batch API ({batched}), "
            f"not {settings.provider}"
        )
    started = time.monotonic()
    runner = Runner(name, settings, client, cache, spending_cap_usd, seed=0)
    keys = [job_key(name, settings, job.prompt) for job in jobs]
    prompts = {key: job.prompt for key, job in zip(keys, jobs, strict=True)}
    records: dict[str, AnswerRecord] = {}
    cached = set()
    attempts: dict[str, int] = {}  # failed answers asked again: paid answers so far
    for key in prompts:
        record = cached_record(cache, key)
        if record is not None and asks_again(record, failed_retries):
            attempts[key] = record.paid_answers
        elif record is not None:
            records[key] = record
            cached.add(key)
    state = _state_path(state_dir, name)
    missing: dict[str, Prompt] = {}
    if len(records) < len(prompts) or state.exists():  # else everything is cached: no client
        own_client = client is None
        runner.client = client = client or llm_backends.make_client(settings)
        try:
            if state.exists():  # an earlier run was interrupted while its batch was running
                previous = json.loads(state.read_text())
                log.info("%s: resuming batch %s", name, previous["batch_id"])
                records.update(
                    await _run_batch(
                        client, runner, settings, prompts, state, previous["batch_id"], attempts
                    )
                )
            for key in prompts:
                if key in records:
                    continue
                if not runner.try_reserve(runner.job_cost_bound(prompts[key])):
                    break  # the cap: this job and the rest are not asked
                missing[key] = prompts[key]
            if missing:
                bodies = {
                    key: runner.provider.request_body(settings, p) for key, p in missing.items()
                }
                batch_id = await runner.provider.submit_batch(client, bodies)
                write_json(
                    state,
                    {"batch_id": batch_id, "provider": settings.provider, "requests": len(bodies)},
                )
                runner.stats.requests += 1
                log.info(
                    "%s: submitted batch %s with %s requests", name, batch_id, f"{len(bodies):,}"
                )
                records.update(
                    await _run_batch(client, runner, settings, prompts, state, batch_id, attempts)
                )
        finally:
            if own_client:
                await client.close()
    outcomes = []
    not_asked = set(prompts) - set(records) - set(missing)
    for job, key in zip(jobs, keys, strict=True):
        if key in not_asked:
            continue  # the spending cap kept it out of the batch
        record: Record = records.get(key) or runner.unanswered(
            job.prompt, "batch: request errored or expired"
        )
        outcomes.append(Outcome(job, record.ok, key in cached, record))
        runner.count_outcome(record)
    runner.stats.jobs = len(jobs)
    runner.stats.cached = sum(o.cached for o in outcomes)
    runner.stats.wall_s = time.monotonic() - started
    exhausted = sum(o.cached and not o.ok for o in outcomes)
    return RunResult(
        tuple(outcomes),
        runner.stats,
        runner.cap_reached,
        next_job_bound_usd=runner.next_job_bound,
        exhausted=exhausted,
    )


def run_batch(
    jobs: Sequence[Job],
    name: str,
    settings: BatchSettings,
    cache: AnswerCache,
    spending_cap_usd: float,
    state_dir: Path,
    failed_retries: int = 0,
) -> RunResult:
    """Synchronous entry point of :func:`run_batch_async`."""
    return asyncio.run(
        run_batch_async(
            jobs,
            name,
            settings,
            cache,
            spending_cap_usd,
            state_dir,
            failed_retries=failed_retries,
        )
    )
