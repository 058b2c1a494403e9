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
import io as std_io
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from deepinterestgr.common.io import write_json
from deepinterestgr.llm import backends as llm_backends
from deepinterestgr.llm.cache import AnswerCache
from deepinterestgr.llm.runner import (
    Job,
    MiningResult,
    MiningSettings,
    Outcome,
    Runner,
    asks_again,
    job_key,
    record_attempts,
)

log = logging.getLogger(__name__)

_OPENAI_DONE = ("completed", "failed", "expired", "cancelled")


class BatchSettings(MiningSettings, Protocol):
    batch_poll_s: float


def _state_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "batches" / f"{name}.json"


async def _submit(client: Any, provider: str, bodies: dict[str, dict[str, Any]]) -> str:
    if provider == "anthropic":
        batch = await client.messages.batches.create(
            requests=[{"custom_id": key, "params": body} for key, body in bodies.items()]
        )
        return batch.id
    lines = "".join(
        json.dumps(
            {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
        + "\n"
        for key, body in bodies.items()
    )
    upload = await client.files.create(
        file=("batch.jsonl", std_io.BytesIO(lines.encode("utf-8"))), purpose="batch"
    )
    batch = await client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return batch.id


async def _wait(client: Any, provider: str, batch_id: str, poll_s: float) -> Any:
    while True:
        if provider == "anthropic":
            batch = await client.messages.batches.retrieve(batch_id)
            if batch.processing_status == "ended":
                return batch
            status = batch.processing_status
        else:
            batch = await client.batches.retrieve(batch_id)
            if batch.status in _OPENAI_DONE:
                return batch
            status = batch.status
        log.info("batch %s: %s; next poll in %.0f s", batch_id, status, poll_s)
        await asyncio.sleep(poll_s)


async def _results(client: Any, provider: str, batch: Any) -> dict[str, dict[str, Any] | None]:
    """custom_id -> provider response JSON (None for an errored or expired request)."""
    out: dict[str, dict[str, Any] | None] = {}
    if provider == "anthropic":
        async for entry in await client.messages.batches.results(batch.id):
            ok = entry.result.type == "succeeded"
            out[entry.custom_id] = entry.result.message.model_dump() if ok else None
        return out
    if batch.output_file_id:
        content = await client.files.content(batch.output_file_id)
        for line in content.text.splitlines():
            if line.strip():
                entry = json.loads(line)
                response = entry.get("response") or {}
                ok = response.get("status_code") == 200
                out[entry["custom_id"]] = response.get("body") if ok else None
    return out


async def _run_batch(
    client: Any,
    runner: Runner,
    settings: BatchSettings,
    name: str,
    prompts: dict[str, Any],
    cache: AnswerCache,
    state: Path,
    batch_id: str,
    attempts: dict[str, int],
) -> dict[str, dict[str, Any]]:
    """Poll ``batch_id`` to its end; cache and return key -> record of its answers."""
    batch = await _wait(client, settings.provider, batch_id, settings.batch_poll_s)
    answers = await _results(client, settings.provider, batch)
    records = {}
    for key, response in answers.items():
        if response is None or key not in prompts:
            continue
        completion = llm_backends.parse_completion(settings.provider, response)
        runner.stats.input_tokens += completion.input_tokens
        runner.stats.output_tokens += completion.output_tokens
        runner.stats.cost_usd += runner.cost(completion.input_tokens, completion.output_tokens)
        record = await runner.resolve(prompts[key], completion)
        record["attempts"] = attempts.get(key, 0) + 1
        cache.put(key, record)
        records[key] = record
    os.unlink(state)
    log.info("%s: batch %s ended, %s answers cached", name, batch_id, f"{len(records):,}")
    return records


async def mine_batch_async(
    jobs: Sequence[Job],
    name: str,
    settings: BatchSettings,
    cache: AnswerCache,
    max_descriptors: int,
    spending_cap_usd: float,
    state_dir: Path,
    client: Any = None,
    failed_retries: int = 0,
) -> MiningResult:
    """Answer ``jobs`` through the provider's batch API (see the module docstring)."""
    if settings.provider not in ("anthropic", "openai"):
        raise ValueError(
            f"{name}: batch mode needs provider anthropic or openai, not {settings.provider}"
        )
    started = time.monotonic()
    runner = Runner(name, settings, client, cache, max_descriptors, spending_cap_usd, seed=0)
    keys = [job_key(name, settings, job.prompt) for job in jobs]
    prompts = {key: job.prompt for key, job in zip(keys, jobs, strict=True)}
    records: dict[str, dict[str, Any]] = {}
    cached = set()
    attempts: dict[str, int] = {}  # failed answers asked again: paid answers so far
    for key in prompts:
        record = cache.get(key)
        if record is not None and asks_again(record, failed_retries):
            attempts[key] = record_attempts(record)
        elif record is not None:
            records[key] = record
            cached.add(key)
    state = _state_path(state_dir, name)
    if len(records) == len(prompts) and not state.exists():
        client = "unused"  # everything is cached: no client, no request
    own_client = client is None
    runner.client = client = client or llm_backends.make_client(settings)
    try:
        if state.exists():  # an earlier run was interrupted while its batch was running
            previous = json.loads(state.read_text())
            log.info("%s: resuming batch %s", name, previous["batch_id"])
            records.update(
                await _run_batch(
                    client,
                    runner,
                    settings,
                    name,
                    prompts,
                    cache,
                    state,
                    previous["batch_id"],
                    attempts,
                )
            )
        missing = {}
        for key in prompts:
            if key in records:
                continue
            if not runner.try_reserve(runner.job_cost_bound(prompts[key])):
                break  # the cap: this job and the rest are not asked
            missing[key] = prompts[key]
        if missing:
            bodies = {key: llm_backends.request_body(settings, p) for key, p in missing.items()}
            batch_id = await _submit(client, settings.provider, bodies)
            write_json(
                state,
                {"batch_id": batch_id, "provider": settings.provider, "requests": len(bodies)},
            )
            runner.stats.requests += 1
            log.info("%s: submitted batch %s with %s requests", name, batch_id, f"{len(bodies):,}")
            records.update(
                await _run_batch(
                    client, runner, settings, name, prompts, cache, state, batch_id, attempts
                )
            )
    finally:
        if own_client:
            await client.close()
    outcomes = []
    not_asked = set(prompts) - set(records) - set(missing)
    for job, key in zip(jobs, keys, strict=True):
        if key in not_asked:
            continue  # the spending cap kept it out of the batch
        record = records.get(key) or {
            "backend": name,
            "model": settings.model,
            "prompt_kind": job.prompt.kind,
            "prompt_version": job.prompt.version,
            "status": "failed",
            "reason": "batch: request errored or expired",
            "interests": [],
            "answers": [],
        }
        outcomes.append(Outcome(job, record["status"] == "ok", key in cached, record))
        runner.count_outcome(record)
    runner.stats.jobs = len(jobs)
    runner.stats.cached = sum(o.cached for o in outcomes)
    runner.stats.wall_s = time.monotonic() - started
    exhausted = sum(o.cached and not o.ok for o in outcomes)
    return MiningResult(
        tuple(outcomes),
        runner.stats,
        runner.cap_reached,
        next_job_bound_usd=runner.next_job_bound,
        exhausted=exhausted,
    )


def mine_batch(
    jobs: Sequence[Job],
    name: str,
    settings: BatchSettings,
    cache: AnswerCache,
    max_descriptors: int,
    spending_cap_usd: float,
    state_dir: Path,
    failed_retries: int = 0,
) -> MiningResult:
    """Synchronous entry point of :func:`mine_batch_async`."""
    return asyncio.run(
        mine_batch_async(
            jobs,
            name,
            settings,
            cache,
            max_descriptors,
            spending_cap_usd,
            state_dir,
            failed_retries=failed_retries,
        )
    )
