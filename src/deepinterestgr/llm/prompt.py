"""A provider-neutral request and the format of its answer, which travel together.

A :class:`Prompt` carries its :class:`AnswerFormat`: the JSON schema sent to providers'
structured-output modes, the check every answer passes (structured mode or not), and the
repair turn asked after an unusable answer. The LLM layer (providers, runner, batches) reads
only this interface, so any task (interest mining, the label stage's judge) brings its own
answer format without the layer knowing the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class AnswerRejected(ValueError):
    """An answer is unusable; the message is the reason (sent back in the repair turn)."""


class AnswerFormat(Protocol):
    """What a task's answers look like and how the runner checks them."""

    @property
    def schema_name(self) -> str:
        """Name of the JSON schema (OpenAI's ``json_schema.name``)."""
        ...

    @property
    def json_schema(self) -> dict[str, Any]:
        """The answer's JSON schema, sent to structured-output modes and part of cache keys."""
        ...

    def read(self, text: str) -> dict[str, Any]:
        """The record fields of a usable answer; raises :class:`AnswerRejected` otherwise."""
        ...

    def failed_fields(self) -> dict[str, Any]:
        """The same fields for an answer that failed (refused, unparseable after repair)."""
        ...

    def unanswered_fields(self) -> dict[str, Any]:
        """The fields of a job with no answer at all (retries outlasted, batch expired)."""
        ...

    def repair_message(self, error: str) -> str:
        """The follow-up user turn of the one repair attempt after an unusable answer."""
        ...


@dataclass(frozen=True)
class ImagePart:
    """An image for a multimodal model: inline bytes (base64) or a public URL."""

    media_type: str  # e.g. "image/png"; empty for a URL
    data_base64: str | None
    url: str | None


@dataclass(frozen=True)
class Prompt:
    """A rendered request: ``system`` rules, one user turn, and the expected answer format.

    ``kind`` and ``version`` name the task's template (e.g. ``item_text`` / ``v1``); both
    are recorded with every answer and hashed into its cache key.
    """

    kind: str
    version: str
    system: str
    user: str
    answer: AnswerFormat
    image: ImagePart | None = None

    def cache_payload(self) -> dict[str, Any]:
        """Everything that determines the answer (the cache key hashes it)."""
        image = None
        if self.image is not None:
            image = {"media_type": self.image.media_type, "data": self.image.data_base64}
            image["url"] = self.image.url
        return {
            "kind": self.kind,
            "version": self.version,
            "system": self.system,
            "user": self.user,
            "image": image,
            "schema": self.answer.json_schema,
        }
