"""A miner killed with SIGKILL mid-run resumes without asking for a finished answer again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deepinterestgr import mining
from deepinterestgr.llm_cache import AnswerCache
from fake_llm_server import FakeLLMServer
from test_mining_llm import KEY, KEY_ENV, items, settings, text_jobs

NUM_ITEMS = 40

CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_mining_llm import items, settings, text_jobs
from deepinterestgr import mining
from deepinterestgr.llm_cache import AnswerCache
config = settings("openai", {url!r})
mining.mine(text_jobs(items({n})), "fake", config, AnswerCache({cache!r}), 5, 100.0)
"""


def test_sigkill_mid_run_then_resume_pays_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    cache_dir = tmp_path / "cache"
    with FakeLLMServer(latency_s=0.1) as server:
        code = CHILD.format(
            tests=str(Path(__file__).parent), url=server.url, n=NUM_ITEMS, cache=str(cache_dir)
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(server.completions()) < 12 and time.monotonic() < deadline:
            assert child.poll() is None, "the miner ended before it could be killed"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        before_kill = len(server.requests)

        config = settings("openai", server.url)
        jobs = text_jobs(items(NUM_ITEMS))
        cache = AnswerCache(cache_dir)
        keys = [mining.job_key("fake", config, job.prompt) for job in jobs]
        finished = {i for i, key in enumerate(keys) if cache.get(key) is not None}
        assert 8 <= len(finished) < NUM_ITEMS  # killed mid-run, whole answers kept
        # Only whole answers: every stored file parses (a torn write leaves only a .tmp file).
        assert all(cache.get(path.stem) for path in cache_dir.rglob("*.json"))

        result = mining.mine(jobs, "fake", config, cache, 5, 100.0)
        asked_again = [
            r["body"]["messages"][1]["content"][0]["text"] for r in server.requests[before_kill:]
        ]

    assert all(outcome.ok for outcome in result.outcomes)
    assert result.stats.cached == len(finished)
    assert len(asked_again) == NUM_ITEMS - len(finished)
    for i in finished:
        assert not any(f'"Item {i} lipstick"' in text for text in asked_again), f"item {i} re-asked"
