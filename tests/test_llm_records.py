"""Typed answer records: cache entries and raw lines keep the JSON written before them."""

from __future__ import annotations

import json

import pytest

from deepinterestgr.llm.records import AnswerRecord, RecordError, Unanswered

# A cache entry as the miner wrote it before records were typed (key order included).
OLD_ENTRY = (
    '{"backend": "claude", "provider": "anthropic", "model": "claude-haiku-4-5", '
    '"prompt_kind": "item_text", "prompt_version": "v1", "status": "ok", "reason": null, '
    '"reasoning": "Red nail polish.", "interests": [{"descriptor": "long lasting nail colour", '
    '"confidence": 0.9}], "dropped": ["for women"], "answers": ["{...}"], "input_tokens": 812, '
    '"output_tokens": 95, "attempts": 1}'
)


def test_an_old_cache_entry_reads_and_writes_back_byte_for_byte():
    record = AnswerRecord.from_json(json.loads(OLD_ENTRY))
    assert record.ok and record.paid_answers == 1 and record.answers == ("{...}",)
    assert record.fields == {
        "reasoning": "Red nail polish.",
        "interests": [{"descriptor": "long lasting nail colour", "confidence": 0.9}],
        "dropped": ["for women"],
    }
    assert json.dumps(record.to_json()) == OLD_ENTRY


def test_an_entry_cached_before_attempts_were_counted_stands_for_one_answer():
    data = json.loads(OLD_ENTRY)
    del data["attempts"]
    data["status"], data["reason"] = "failed", "refusal: model refused"
    record = AnswerRecord.from_json(data)
    assert not record.ok and record.attempts is None and record.paid_answers == 1
    assert json.dumps(record.to_json()) == json.dumps(data)  # no 'attempts' key added


def test_an_entry_without_a_record_field_is_an_error_naming_it():
    data = json.loads(OLD_ENTRY)
    del data["output_tokens"]
    with pytest.raises(RecordError, match=r"cache/ab/abc\.json: missing field 'output_tokens'"):
        AnswerRecord.from_json(data, "cache/ab/abc.json")


def test_an_unanswered_job_writes_the_short_failed_line():
    reason = "gave up after 7 attempts: http 500"
    line = Unanswered("gpt", "gpt-4.1-mini", "item_text", "v1", reason, {"interests": []})
    assert line.to_json() == {
        "backend": "gpt",
        "model": "gpt-4.1-mini",
        "prompt_kind": "item_text",
        "prompt_version": "v1",
        "status": "failed",
        "reason": reason,
        "interests": [],
        "answers": [],
    }
    assert not line.ok
