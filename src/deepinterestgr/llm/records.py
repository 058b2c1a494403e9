"""Typed records of LLM answers: one cache entry per paid answer, one raw line per job.

The JSON of each record keeps one key order (the files ``data/mine/raw/<backend>.jsonl`` and
the answer cache are read by people and diffed across runs), with the task's own answer
fields (:meth:`~deepinterestgr.llm.prompt.AnswerFormat.read`, e.g. mining's ``reasoning``,
``interests``, ``dropped``) between ``reason`` and ``answers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from deepinterestgr.common.errors import PipelineError

Status = Literal["ok", "failed"]

# Keys of an answer record outside the task's answer fields, in file order.
_HEAD = ("backend", "provider", "model", "prompt_kind", "prompt_version", "status", "reason")
_TAIL = ("answers", "input_tokens", "output_tokens", "attempts")


class RecordError(ValueError, PipelineError):
    """A cached record lacks a field every answer record has."""


@dataclass(frozen=True)
class AnswerRecord:
    """One paid answer to one prompt (a first answer, plus a repair answer when one was asked).

    Cached as soon as it is paid for; a failed one is asked again on later runs while
    ``attempts`` is within ``failed_retries``.
    """

    backend: str  # the backend's name in params (mine.llms)
    provider: str
    model: str
    prompt_kind: str
    prompt_version: str
    status: Status
    reason: str | None  # why it failed, or None
    fields: dict[str, Any]  # the task's answer fields (AnswerFormat.read / failed_fields)
    answers: tuple[str, ...]  # the raw answer texts, first then repair
    input_tokens: int  # all requests of this answer together
    output_tokens: int
    # Paid answers behind this record, the re-asks of a failed one included; None in records
    # cached before the count was kept (they stand for one).
    attempts: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def paid_answers(self) -> int:
        return self.attempts or 1

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {key: getattr(self, key) for key in _HEAD}
        data.update(self.fields)
        data["answers"] = list(self.answers)
        data["input_tokens"] = self.input_tokens
        data["output_tokens"] = self.output_tokens
        if self.attempts is not None:
            data["attempts"] = self.attempts
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "answer record") -> AnswerRecord:
        """Read a cached record; every key that is not a record field is an answer field."""
        missing = [key for key in (*_HEAD, *_TAIL[:3]) if key not in data]
        if missing:
            raise RecordError(f"{where}: missing field '{missing[0]}'")
        return cls(
            **{key: data[key] for key in _HEAD},
            fields={k: v for k, v in data.items() if k not in _HEAD and k not in _TAIL},
            answers=tuple(data["answers"]),
            input_tokens=int(data["input_tokens"]),
            output_tokens=int(data["output_tokens"]),
            attempts=data.get("attempts"),
        )


@dataclass(frozen=True)
class Unanswered:
    """A job with no answer: transient errors outlasted every retry, or a batch request
    errored or expired. Nothing was paid, so nothing is cached; the next run asks again."""

    backend: str
    model: str
    prompt_kind: str
    prompt_version: str
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)  # AnswerFormat.unanswered_fields
    status: Status = "failed"
    ok = False

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "prompt_kind": self.prompt_kind,
            "prompt_version": self.prompt_version,
            "status": self.status,
            "reason": self.reason,
            **self.fields,
            "answers": [],
        }


Record = AnswerRecord | Unanswered
