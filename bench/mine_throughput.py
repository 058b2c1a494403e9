"""Throughput of the LLM miner against the fake API server, and the cost of a cached rerun.

1. Live: the fake server (its own process, so it does not share the miner's interpreter)
   answers every request after ``--latency`` seconds. Steady state: the SDK client is
   created and warmed up (2 requests per slot) before timing. With ``k`` requests in flight the
   bound is ``k / latency`` items/s; we report items/s and the share of that bound for each
   ``k`` in ``--in-flight`` (target: at least 85 %).
2. Cached: every answer of a ``--folder`` benchmark (default: the 12,101 Amazon Beauty items) is
   put in a fresh cache, then a full mining run is timed: rendering every prompt, hashing
   every cache key and reading every answer (target: under 10 s). No request is made.

Usage:  .venv/bin/python bench/mine_throughput.py [--provider openai] [--out bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deepinterestgr.common import io
from deepinterestgr.common.params import LLMParams
from deepinterestgr.data_sources import benchmark
from deepinterestgr.data_sources.dataset import SkipLog
from deepinterestgr.interests.prompts import item_text_prompt
from deepinterestgr.llm import backends as llm_backends
from deepinterestgr.llm import runner as mining
from deepinterestgr.llm.cache import AnswerCache
from deepinterestgr.llm.records import AnswerRecord
from deepinterestgr.testing.fake_llm_server import fake_backend

ROOT = Path(__file__).resolve().parents[1]

KEY_ENV = "DIGR_BENCH_KEY"
BEAUTY = ROOT.parent / "shared" / "data" / "amazon" / "beauty"


def llm_settings(provider: str, url: str, in_flight: int) -> LLMParams:
    """The fake server's backend with ``in_flight`` requests at once and bench-sized timings."""
    return fake_backend(
        provider,
        url,
        KEY_ENV,
        model="bench-model",
        images=False,
        concurrency=in_flight,
        timeout_s=30.0,
        max_retries=2,
        backoff_base_s=0.1,
        backoff_max_s=1.0,
        batch_poll_s=1.0,
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_jobs(n: int, tag: str) -> list[mining.Job]:
    items = [
        io.Item(i, f"B{i}", f"Bench item {i} {tag}", "Brand", (("Beauty",),)) for i in range(n)
    ]
    return [mining.Job("item", it.item_id, item_text_prompt(it, "v1", 5, 500)) for it in items]


async def timed(jobs, config, cache, server_pid):
    """Steady state: the client is created and its connections opened before the clock
    starts (a one-off ~0.3 s per backend run, reported separately by the stage's wall_s)."""
    client = llm_backends.make_client(config)
    try:
        warm = bench_jobs(2 * config.concurrency, f"warm-up {config.concurrency}")
        await mining.run_jobs_async(warm, "bench", config, cache, 1e9, client=client)
        server_cpu = _cpu_seconds(server_pid)
        started, cpu = time.perf_counter(), time.process_time()
        result = await mining.run_jobs_async(jobs, "bench", config, cache, 1e9, client=client)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return result, wall, cpu, _cpu_seconds(server_pid) - server_cpu
    finally:
        await client.close()


def live(provider: str, latency: float, in_flight: list[int], per_slot: int) -> list[dict]:
    server = subprocess.Popen(
        [sys.executable, "-m", "deepinterestgr.testing.fake_llm_server", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        rows = []
        for k in in_flight:
            n = max(20, per_slot * k)
            jobs = bench_jobs(n, f"run {k}")
            with tempfile.TemporaryDirectory() as cache_dir:
                result, wall, cpu, server_cpu = asyncio.run(
                    timed(jobs, llm_settings(provider, url, k), AnswerCache(cache_dir), server.pid)
                )
            assert result.stats.ok == n, result.stats.as_dict()
            rate, bound = n / wall, k / latency
            rows.append(
                {
                    "in_flight": k,
                    "items": n,
                    "wall_s": round(wall, 3),
                    "items_per_s": round(rate, 2),
                    "bound_items_per_s": bound,
                    "share_of_bound": round(rate / bound, 4),
                    "miner_cpu_ms_per_item": round(1000 * cpu / n, 2),
                    "server_cpu_ms_per_item": round(1000 * server_cpu / n, 2),
                }
            )
            print(
                f"{k:>3} in flight: {n:>5} items in {wall:6.2f} s = {rate:7.2f} items/s "
                f"({rate / bound:.1%} of {bound:.0f}); CPU per item: miner "
                f"{1000 * cpu / n:.1f} ms, server {1000 * server_cpu / n:.1f} ms",
                flush=True,
            )
        return rows
    finally:
        server.terminate()
        server.wait()


def cached(provider: str, folder: Path) -> dict:
    items = benchmark.load(folder, SkipLog(max_rate=0.0)).items  # the download stage's loader
    config = llm_settings(provider, "http://127.0.0.1:9", 32)  # never contacted
    answer = AnswerRecord(
        backend="bench",
        provider=provider,
        model=config.model,
        prompt_kind="item_text",
        prompt_version="v1",
        status="ok",
        reason=None,
        fields={
            "reasoning": "r",
            "interests": [{"descriptor": "bench interest here", "confidence": 0.5}],
            "dropped": [],
        },
        answers=("{}",),
        input_tokens=1,
        output_tokens=1,
        attempts=1,
    ).to_json()
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = AnswerCache(cache_dir)
        started = time.perf_counter()
        keys = [
            mining.job_key("bench", config, item_text_prompt(it, "v1", 5, 1000)) for it in items
        ]
        with ThreadPoolExecutor(16) as pool:  # each put waits for its fsync: overlap them
            list(pool.map(lambda key: cache.put(key, answer), keys))
        fill = time.perf_counter() - started
        started = time.perf_counter()
        jobs = [mining.Job("item", it.item_id, item_text_prompt(it, "v1", 5, 1000)) for it in items]
        result = mining.run_jobs(jobs, "bench", config, AnswerCache(cache_dir), 1e9)
        wall = time.perf_counter() - started
    assert result.stats.cached == len(items) and result.stats.requests == 0
    print(
        f"cached rerun: {len(items):,} items in {wall:.2f} s "
        f"({len(items) / wall:,.0f} items/s; filling the cache took {fill:.1f} s)",
        flush=True,
    )
    return {"items": len(items), "wall_s": round(wall, 3), "fill_s": round(fill, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--provider", default="openai", choices=["openai", "anthropic"])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--per-slot", type=int, default=40, help="items per request slot")
    parser.add_argument("--folder", type=Path, default=BEAUTY, help="a benchmark folder")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    os.environ.setdefault(KEY_ENV, "bench-key")
    figures = {
        "provider": args.provider,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "latency_s": args.latency,
        "live": live(args.provider, args.latency, args.in_flight, args.per_slot),
        "cached_rerun": cached(args.provider, args.folder),
    }
    if args.out:
        io.write_json(args.out, figures)


if __name__ == "__main__":
    main()
