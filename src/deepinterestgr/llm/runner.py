"""Run LLM jobs against one backend: bounded concurrency, retries, cache, cost.

A :class:`Job` is one prompt about one item or user. :func:`run_jobs` answers a list of jobs:

1. Jobs whose answer is in the :class:`~deepinterestgr.llm.cache.AnswerCache` are served
   from it (no request, no cost). A cached *failed* answer does not block a retry: a job is
   asked again on up to ``failed_retries`` later runs (its record counts ``attempts``), so a
   backend that answered badly and was fixed is simply rerun.
2. The rest go out with at most ``concurrency`` requests in flight (asyncio + the SDKs'
   async clients) and at most ``requests_per_minute`` starts per minute.
3. 429, 408/409, 5xx, timeouts and lost connections are retried up to ``max_retries``
   times, waiting the server's ``retry-after`` when given (capped at ``backoff_max_s``,
   logged at INFO), else exponential backoff ``min(backoff_max_s, backoff_base_s *
   2**attempt)`` with jitter in [50 %, 100 %] (so clients that failed together do not retry
   together).
4. An answer that fails its prompt's check (:meth:`~deepinterestgr.llm.prompt.AnswerFormat.read`)
   gets one repair turn; if that fails too, or the model refused, the job is recorded failed
   with its reason.
   Answers, failed or not, are paid for, so they are cached at once, each in its own file.
5. The spending cap is a hard limit: before a job starts, the most it can cost (its first
   request and a repair turn, each with every input token the body can hold and
   ``max_tokens`` out; :meth:`Runner.job_cost_bound`) is reserved. A job whose bound does
   not fit under ``spending_cap_usd`` beside the spend and the other reservations waits for
   jobs in flight to end (their real cost replaces their bound); when nothing is in flight
   and it still does not fit, the run stops. The result says so and the caller stops
   (everything answered so far is cached).
6. After ``max_consecutive_failures`` failed answers in a row (e.g. the first N jobs of a
   broken backend) no new job starts: the result names the reason, nothing more is paid.

Transient failures that outlast the retries are recorded failed but *not* cached, so the
next run asks again. Authentication errors abort at once: every other request would fail
the same way.

The runner knows no task: interest mining and the label stage's judge both send it jobs whose
prompts carry their own answer format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from tqdm.auto import tqdm

from deepinterestgr.common.errors import PipelineError
from deepinterestgr.llm import backends as llm_backends
from deepinterestgr.llm.cache import AnswerCache, cache_key
from deepinterestgr.llm.prompt import AnswerRejected, Prompt
from deepinterestgr.llm.records import AnswerRecord, Record, Unanswered

log = logging.getLogger(__name__)


class RunnerSettings(llm_backends.LLMSettings, Protocol):
    """The params of one LLM backend that the runner reads (``LLMParams`` in params.py)."""

    concurrency: int
    requests_per_minute: int
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    price_input_per_mtok: float
    price_output_per_mtok: float


@dataclass(frozen=True)
class Job:
    """One request to make: ``prompt`` about item or user ``target_id``."""

    target: Literal["item", "user"]
    target_id: int
    prompt: Prompt


@dataclass(frozen=True)
class Outcome:
    """The answer to one job; ``record`` holds its answer texts and the task's fields."""

    job: Job
    ok: bool
    cached: bool
    record: Record

    def to_json(self) -> dict[str, Any]:
        """One line of a raw answers file: the job's target, whether it was cached, the record."""
        return {
            "target": self.job.target,
            "target_id": self.job.target_id,
            "cached": self.cached,
            **self.record.to_json(),
        }


@dataclass
class BackendStats:
    """Counters of one backend's run, written to ``metrics/mine.json``."""

    jobs: int = 0
    cached: int = 0
    ok: int = 0
    failed: int = 0
    requests: int = 0  # HTTP attempts, retries and repairs included
    retries: int = 0
    repairs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    failure_reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "failure_reasons"}
        data["cost_usd"] = round(self.cost_usd, 6)
        data["wall_s"] = round(self.wall_s, 3)
        data["failure_rate"] = round(self.failed / self.jobs, 6) if self.jobs else 0.0
        data["failure_reasons"] = dict(self.failure_reasons.most_common())
        return data


@dataclass(frozen=True, repr=False)
class RunResult:
    outcomes: tuple[Outcome, ...]  # one per answered job, in job order
    stats: BackendStats
    cap_reached: bool  # the spending cap stopped the run before every job was answered
    stopped: str | None = None  # why the run stopped early (failures in a row), else None
    next_job_bound_usd: float = 0.0  # cap_reached: the most the first job not started could cost
    exhausted: int = 0  # failed answers served from the cache: their re-asks are used up

    def __repr__(self) -> str:  # asyncio may repr a task's result: keep it short
        return f"RunResult({len(self.outcomes):,} outcomes, cap_reached={self.cap_reached})"


# An image costs at most this many input tokens with the providers we speak (Anthropic: about
# (width x height) / 750, capped near 1,600 by resizing; OpenAI GPT-4.1 mini: 1,536 patches x
# 1.62), whatever its bytes: a 16-pixel PNG is 100 bytes but not 100 tokens.
IMAGE_TOKEN_BOUND = 2_500
# Tokens a provider adds around the body: message framing and, for structured output, its
# own instructions for the schema (Anthropic documents a few hundred).
REQUEST_OVERHEAD_TOKENS = 1_000
# Longest error message a repair turn quotes (the failed answer counts as max_tokens tokens).
_LONGEST_REPAIR_REASON = "x" * 300


def input_token_bound(body: dict[str, Any]) -> int:
    """An upper bound of the input tokens of one request body.

    Every token of a byte-level BPE vocabulary covers at least one byte, so the UTF-8 bytes
    of the body (image data left out) bound its text tokens; each image adds at most
    :data:`IMAGE_TOKEN_BOUND`, and the request :data:`REQUEST_OVERHEAD_TOKENS`.
    """
    images = 0

    def strip(value: Any) -> Any:
        nonlocal images
        if isinstance(value, dict):
            if value.get("type") in ("image", "image_url"):
                images += 1
                return None
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    text = json.dumps(strip(body), ensure_ascii=False)
    return len(text.encode("utf-8")) + images * IMAGE_TOKEN_BOUND + REQUEST_OVERHEAD_TOKENS


class AuthenticationFailed(RuntimeError, PipelineError):
    """The provider rejected the credentials; nothing else can succeed."""


def job_key(name: str, settings: RunnerSettings, prompt: Prompt) -> str:
    """Cache key: backend name, provider, model, generation settings and the prompt."""
    return cache_key(
        {
            "backend": name,
            "provider": settings.provider,
            "model": settings.model,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "structured_output": settings.structured_output,
            "prompt": prompt.cache_payload(),
        }
    )


class _GaveUp(Exception):
    """A transient failure that outlasted every retry."""


class Runner:
    """One backend's request machinery: rate slots, retries, repair, counters and cost.

    Shared by the worker coroutines of :func:`run_jobs_async` and by the batch path
    (:mod:`deepinterestgr.llm.batches`), which repairs batch answers through it."""

    def __init__(
        self,
        name: str,
        settings: RunnerSettings,
        client: Any,
        cache: AnswerCache,
        spending_cap_usd: float,
        seed: int,
        max_consecutive_failures: int = 0,
    ) -> None:
        self.name = name
        self.settings = settings
        self.provider = llm_backends.provider_of(settings)
        self.client = client
        self.cache = cache
        self.spending_cap_usd = spending_cap_usd
        self.max_consecutive_failures = max_consecutive_failures
        self.stats = BackendStats()
        self.cap_reached = False
        self.next_job_bound = 0.0
        self.reserved = 0.0  # cost bounds of the jobs in flight
        self.in_flight = 0  # jobs holding a reservation
        self.budget_changed: asyncio.Condition | None = None  # made in the running loop
        self.failures_in_a_row = 0
        self.stopped: str | None = None
        self.bound_broken = False
        self.rng = random.Random(seed)
        self.interval = 60.0 / settings.requests_per_minute if settings.requests_per_minute else 0.0
        self.next_start = 0.0
        self.slot_lock = asyncio.Lock()
        self.pending_writes: list[asyncio.Future] = []

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        s = self.settings
        return (
            input_tokens * s.price_input_per_mtok + output_tokens * s.price_output_per_mtok
        ) / 1e6

    def job_cost_bound(self, prompt: Prompt) -> float:
        """The most one job can cost: its first request and a repair turn, each with every
        input token its body can hold and ``max_tokens`` out (retried errors are not billed)."""
        first = input_token_bound(self.provider.request_body(self.settings, prompt))
        out = self.settings.max_tokens
        # The repair turn resends the prompt with the failed answer (<= max_tokens) appended.
        repair_bytes = len(prompt.answer.repair_message(_LONGEST_REPAIR_REASON).encode("utf-8"))
        repair = first + out + repair_bytes
        return self.cost(first, out) + self.cost(repair, out)

    def try_reserve(self, bound: float) -> bool:
        """Reserve ``bound`` USD for a job if it fits under the cap now, else note the cap."""
        if self.stats.cost_usd + self.reserved + bound > self.spending_cap_usd:
            self.cap_reached = True
            self.next_job_bound = bound
            return False
        self.reserved += bound
        self.in_flight += 1
        return True

    async def reserve(self, bound: float) -> bool:
        """Reserve ``bound`` USD, waiting while jobs in flight may still free enough of it."""
        if self.budget_changed is None:
            self.budget_changed = asyncio.Condition()
        async with self.budget_changed:
            while self.stats.cost_usd + self.reserved + bound > self.spending_cap_usd:
                if self.in_flight == 0 or self.cap_reached:  # nothing left to wait for
                    self.try_reserve(bound)
                    self.budget_changed.notify_all()
                    return False
                await self.budget_changed.wait()
            return self.try_reserve(bound)

    async def release_async(self, bound: float, job_cost: float) -> None:
        self.release(bound, job_cost)
        if self.budget_changed is not None:
            async with self.budget_changed:
                self.budget_changed.notify_all()

    def release(self, bound: float, job_cost: float) -> None:
        """A job ended: its reservation goes, its real cost (already in stats) stays."""
        self.in_flight -= 1
        # Exactly 0 once nothing is in flight (float sums would leave a residue).
        self.reserved = self.reserved - bound if self.in_flight else 0.0
        if job_cost > bound * (1 + 1e-9) and not self.bound_broken:
            self.bound_broken = True  # only if a provider counts more tokens than the bound
            log.warning(
                "%s: a job cost $%.6f, above its bound $%.6f: the spending cap may be exceeded",
                self.name,
                job_cost,
                bound,
            )

    async def _rate_slot(self) -> None:
        """Space request starts ``60 / requests_per_minute`` seconds apart."""
        if not self.interval:
            return
        async with self.slot_lock:
            now = time.monotonic()
            wait = self.next_start - now
            self.next_start = max(now, self.next_start) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        if retry_after is not None:
            # A server may ask for minutes; backoff_max_s is the longest the run should stall.
            return min(retry_after, s.backoff_max_s)
        return min(s.backoff_max_s, s.backoff_base_s * 2**attempt) * self.rng.uniform(0.5, 1.0)

    async def call(self, body: dict[str, Any]) -> llm_backends.Completion:
        """One completion with retries; counts requests, tokens and cost."""
        for attempt in range(self.settings.max_retries + 1):
            await self._rate_slot()
            self.stats.requests += 1
            try:
                completion = await llm_backends.complete(self.client, self.settings, body)
            except Exception as err:  # SDK errors: classified below, anything else re-raised
                transient = llm_backends.classify_error(err)
                status = getattr(err, "status_code", None)
                if status in (401, 403):
                    raise AuthenticationFailed(
                        f"{self.name}: {llm_backends.describe_error(err)}; check the key in "
                        f"${self.settings.api_key_env}"
                    ) from None
                if transient is None:
                    if status is None:
                        raise
                    raise _GaveUp(f"rejected: {llm_backends.describe_error(err)}") from None
                if attempt == self.settings.max_retries:
                    raise _GaveUp(
                        f"gave up after {attempt + 1} attempts: {transient.reason}"
                    ) from None
                self.stats.retries += 1
                delay = self._backoff(attempt, transient.retry_after_s)
                if transient.retry_after_s is None:
                    log.debug("%s: %s, retrying in %.2f s", self.name, transient.reason, delay)
                else:
                    log.info(
                        "%s: %s with retry-after %.1f s; retrying in %.1f s (backoff_max_s %.1f)",
                        self.name,
                        transient.reason,
                        transient.retry_after_s,
                        delay,
                        self.settings.backoff_max_s,
                    )
                await asyncio.sleep(delay)
                continue
            self.count_usage(completion)
            return completion
        raise AssertionError("unreachable")

    def count_usage(self, completion: llm_backends.Completion) -> None:
        """Add one paid answer's tokens and cost to the counters."""
        self.stats.input_tokens += completion.input_tokens
        self.stats.output_tokens += completion.output_tokens
        self.stats.cost_usd += self.cost(completion.input_tokens, completion.output_tokens)

    async def answer(self, prompt: Prompt) -> AnswerRecord:
        """The cacheable record of one prompt: the answer's fields or a failure reason."""
        first = await self.call(self.provider.request_body(self.settings, prompt))
        return await self.resolve(prompt, first)

    async def resolve(self, prompt: Prompt, first: llm_backends.Completion) -> AnswerRecord:
        """Check a first answer (live or from a batch); one live repair turn if unusable."""
        texts = [first.text]
        tokens = [first.input_tokens, first.output_tokens]
        completion, error, fields = first, None, None
        if first.refusal is None:
            try:
                fields = prompt.answer.read(first.text)
            except AnswerRejected as err:
                error = str(err)
                self.stats.repairs += 1
                turn = llm_backends.RepairTurn(first.text, prompt.answer.repair_message(error))
                repair = self.provider.request_body(self.settings, prompt, turn)
                try:
                    completion = await self.call(repair)
                except _GaveUp as err:
                    # The first answer is paid for: record (and cache) the failure with it.
                    return self._record(prompt, None, f"repair {err}", texts, tokens)
                texts.append(completion.text)
                tokens = [tokens[0] + completion.input_tokens, tokens[1] + completion.output_tokens]
                if completion.refusal is None:
                    try:
                        fields = prompt.answer.read(completion.text)
                        error = None
                    except AnswerRejected as err2:
                        error = f"unparseable after repair: {err2}"
        if completion.refusal is not None:
            error = f"refusal: {completion.refusal}"
        return self._record(prompt, fields if error is None else None, error, texts, tokens)

    def _record(
        self,
        prompt: Prompt,
        fields: dict[str, Any] | None,
        error: str | None,
        texts: list[str],
        tokens: list[int],
    ) -> AnswerRecord:
        """The cacheable record of one answered job (``fields`` is None when it failed)."""
        ok = fields is not None and error is None
        return AnswerRecord(
            backend=self.name,
            provider=self.settings.provider,
            model=self.settings.model,
            prompt_kind=prompt.kind,
            prompt_version=prompt.version,
            status="ok" if ok else "failed",
            reason=error,
            fields=fields if fields is not None and ok else prompt.answer.failed_fields(),
            answers=tuple(texts),
            input_tokens=tokens[0],
            output_tokens=tokens[1],
        )

    def unanswered(self, prompt: Prompt, reason: str) -> Unanswered:
        """The record of a job that got no answer (nothing paid, nothing cached)."""
        return Unanswered(
            self.name,
            self.settings.model,
            prompt.kind,
            prompt.version,
            reason,
            prompt.answer.unanswered_fields(),
        )

    async def worker(
        self,
        queue: asyncio.Queue,
        results: dict[int, Outcome],
        keys: list[str],
        attempts: dict[int, int],
        bar: tqdm,
    ) -> None:
        while self.stopped is None and not self.cap_reached:
            try:
                index, job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            bound = self.job_cost_bound(job.prompt)
            if not await self.reserve(bound):
                return
            job_cost = 0.0
            record: Record
            try:
                answered = await self.answer(job.prompt)
                record = answered = replace(answered, attempts=attempts.get(index, 0) + 1)
                job_cost = self.cost(answered.input_tokens, answered.output_tokens)
                # Stored in a thread, off this worker's path: its next request starts now.
                self.pending_writes.append(
                    asyncio.ensure_future(
                        asyncio.to_thread(self.cache.put, keys[index], answered.to_json())
                    )
                )
            except _GaveUp as err:
                record = self.unanswered(job.prompt, str(err))
            finally:
                await self.release_async(bound, job_cost)
            results[index] = Outcome(job, record.ok, False, record)
            self.count_outcome(record)
            self.watch_failures(record)
            bar.update(1)
            bar.set_postfix_str(self._postfix(), refresh=False)

    def watch_failures(self, record: Record) -> None:
        """Stop starting jobs after ``max_consecutive_failures`` new failed answers in a row."""
        self.failures_in_a_row = 0 if record.ok else self.failures_in_a_row + 1
        limit = self.max_consecutive_failures
        if limit and self.failures_in_a_row >= limit and self.stopped is None:
            self.stopped = (
                f"{self.failures_in_a_row:,} answers in a row failed (last: {record.reason})"
            )
            log.warning("%s: %s; no new job starts", self.name, self.stopped)

    def count_outcome(self, record: Record) -> None:
        if record.ok:
            self.stats.ok += 1
        else:
            self.stats.failed += 1
            self.stats.failure_reasons[str(record.reason).split(":")[0]] += 1

    def _postfix(self) -> str:
        s = self.stats
        return f"cached={s.cached:,} failed={s.failed:,} ${s.cost_usd:.2f}"


async def run_jobs_async(
    jobs: Sequence[Job],
    name: str,
    settings: RunnerSettings,
    cache: AnswerCache,
    spending_cap_usd: float,
    seed: int = 0,
    client: Any = None,
    failed_retries: int = 0,
    max_consecutive_failures: int = 0,
) -> RunResult:
    """Answer ``jobs`` with backend ``name`` (see the module docstring for the policy).

    ``failed_retries``: later runs that ask a job again whose cached answer failed;
    ``max_consecutive_failures``: failed answers in a row after which no job starts (0 = off).
    """
    started = time.monotonic()
    runner = Runner(name, settings, client, cache, spending_cap_usd, seed, max_consecutive_failures)
    keys = [job_key(name, settings, job.prompt) for job in jobs]
    results: dict[int, Outcome] = {}
    queue: asyncio.Queue = asyncio.Queue()
    bar = tqdm(total=len(jobs), desc=f"ask {name}", unit="job", smoothing=0.1)
    first_of: dict[str, int] = {}  # identical prompts (e.g. duplicate titles) are asked once
    repeats: list[tuple[int, int]] = []
    attempts: dict[int, int] = {}  # job index -> paid answers so far (failed ones asked again)
    exhausted = 0
    for index, (job, key) in enumerate(zip(jobs, keys, strict=True)):
        record = cached_record(cache, key)
        if record is not None and asks_again(record, failed_retries):
            attempts[index] = record.paid_answers
            record = None
        if record is None:
            if key in first_of:
                repeats.append((index, first_of[key]))
            else:
                first_of[key] = index
                queue.put_nowait((index, job))
            continue
        results[index] = Outcome(job, record.ok, True, record)
        runner.stats.cached += 1
        runner.count_outcome(record)
        exhausted += not record.ok
    bar.update(runner.stats.cached)
    runner.stats.jobs = len(jobs)
    if attempts:
        log.info("%s: asking %s jobs again whose cached answer failed", name, f"{len(attempts):,}")
    own_client = client is None and not queue.empty()
    try:
        if not queue.empty():
            runner.client = client or llm_backends.make_client(settings)
            workers = [
                asyncio.create_task(runner.worker(queue, results, keys, attempts, bar))
                for _ in range(max(1, min(settings.concurrency, queue.qsize())))
            ]
            await asyncio.gather(*workers)
    finally:
        await asyncio.gather(*runner.pending_writes)
        bar.close()
        if own_client and runner.client is not None:
            await runner.client.close()
    for index, first in repeats:
        if first in results:
            results[index] = replace(results[first], job=jobs[index])
            runner.count_outcome(results[index].record)
    runner.stats.wall_s = time.monotonic() - started
    outcomes = tuple(results[i] for i in sorted(results))
    return RunResult(
        outcomes,
        runner.stats,
        runner.cap_reached,
        runner.stopped,
        runner.next_job_bound,
        exhausted,
    )


def cached_record(cache: AnswerCache, key: str) -> AnswerRecord | None:
    """The cached answer record under ``key``, or None."""
    data = cache.get(key)
    if data is None:
        return None
    return AnswerRecord.from_json(data, f"answer cache {cache.path(key)}")


def asks_again(record: AnswerRecord, failed_retries: int) -> bool:
    """Whether a cached record is asked again: a failed answer, re-asks not yet used up."""
    return not record.ok and record.paid_answers <= failed_retries


def run_jobs(
    jobs: Sequence[Job],
    name: str,
    settings: RunnerSettings,
    cache: AnswerCache,
    spending_cap_usd: float,
    seed: int = 0,
    failed_retries: int = 0,
    max_consecutive_failures: int = 0,
) -> RunResult:
    """Synchronous entry point of :func:`run_jobs_async` (creates and closes the client)."""
    return asyncio.run(
        run_jobs_async(
            jobs,
            name,
            settings,
            cache,
            spending_cap_usd,
            seed,
            failed_retries=failed_retries,
            max_consecutive_failures=max_consecutive_failures,
        )
    )
