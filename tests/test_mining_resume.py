"""A miner killed with SIGKILL mid-run resumes without asking for a finished answer again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deepinterestgr.llm import runner as mining
from deepinterestgr.llm.cache import AnswerCache
from deepinterestgr.testing.fake_llm_server import FakeLLMServer
from test_mining_llm import KEY, KEY_ENV, items, settings, text_jobs

NUM_ITEMS = 40
ANSWERED = 10  # items 0..9 are answered before the kill; the server holds every later request

CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_mining_llm import items, settings, text_jobs
from deepinterestgr.llm import runner as mining
from deepinterestgr.llm.cache import AnswerCache
config = settings("openai", {url!r})
mining.run_jobs(text_jobs(items({n})), "fake", config, AnswerCache({cache!r}), 100.0)
"""


def test_sigkill_mid_run_then_resume_pays_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    cache_dir = tmp_path / "cache"
    with FakeLLMServer() as server:
        # Deterministic whatever the load: the first ANSWERED items are answered, every other
        # request waits in the server, so the kill finds exactly ANSWERED answers cached and
        # the 4 requests in flight (concurrency 4) unanswered.
        for i in range(ANSWERED):
            server.script(f"Item {i} lipstick", ["ok"])
        server.default_action = "hold"
        code = CHILD.format(
            tests=str(Path(__file__).parent), url=server.url, n=NUM_ITEMS, cache=str(cache_dir)
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while len(AnswerCache(cache_dir)) < ANSWERED and time.monotonic() < deadline:
            assert child.poll() is None, "the miner ended before it could be killed"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        before_kill = len(server.completions())
        server.default_action = "ok"
        server.released.set()

        config = settings("openai", server.url)
        jobs = text_jobs(items(NUM_ITEMS))
        cache = AnswerCache(cache_dir)
        keys = [mining.job_key("fake", config, job.prompt) for job in jobs]
        finished = {i for i, key in enumerate(keys) if cache.get(key) is not None}
        assert finished == set(range(ANSWERED))  # killed mid-run, whole answers kept
        # Only whole answers: every stored file parses (a torn write leaves only a .tmp file).
        assert all(cache.get(path.stem) for path in cache_dir.rglob("*.json"))

        result = mining.run_jobs(jobs, "fake", config, cache, 100.0)
        asked_again = [
            r["body"]["messages"][1]["content"][0]["text"]
            for r in server.completions()[before_kill:]
        ]

    assert all(outcome.ok for outcome in result.outcomes)
    assert [o.cached for o in result.outcomes] == [i in finished for i in range(NUM_ITEMS)]
    assert result.stats.requests == NUM_ITEMS - ANSWERED  # counted by the resuming client
    for i in finished:
        assert not any(f'"Item {i} lipstick"' in text for text in asked_again), f"item {i} re-asked"
