"""LLM providers, one object per wire format: Anthropic Messages, OpenAI chat completions, and
any OpenAI-compatible server (vLLM, Ollama, a local gateway) at a configurable ``base_url``.

Each :class:`Provider` turns a :class:`~deepinterestgr.llm.prompt.Prompt` into its own request
body (structured JSON-schema output from the prompt's answer format where the provider has
it, images as its own content part), reads its answer into a :class:`Completion`, and speaks
its batch API where it has one. The same request body serves a live call and a line of a
batch job, and the same parser reads a live answer and a batch result, so both paths agree
byte for byte. A new wire format is one new :class:`Provider` subclass listed in
:data:`PROVIDERS`, and its name among the choices of ``LLMParams.provider`` (params.py).

API keys are read from the environment variable named in params at client construction and
go nowhere else: not into request bodies we log, cache keys, records or error messages.
The SDKs' own retries are switched off (``max_retries=0``); :mod:`deepinterestgr.llm.runner`
owns retries so it can honour ``retry-after`` and count every attempt.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from deepinterestgr.common.errors import PipelineError
from deepinterestgr.llm.prompt import ImagePart, Prompt

log = logging.getLogger(__name__)

# OpenAI-compatible servers started without authentication still need a non-empty key.
KEYLESS_SERVER_KEY = "not-needed"


class LLMSettings(Protocol):
    """What a provider needs from its params entry (see ``LLMParams`` in params.py)."""

    provider: str
    model: str
    base_url: str | None
    api_key_env: str | None
    structured_output: bool
    max_tokens: int
    temperature: float
    timeout_s: float


@dataclass(frozen=True)
class Completion:
    """One provider answer, provider-neutral."""

    text: str  # the answer text (JSON expected); "" when refused
    refusal: str | None  # why the model declined, or None
    input_tokens: int
    output_tokens: int
    stop_reason: str | None


@dataclass(frozen=True)
class Transient:
    """A failed call worth retrying, and how long the server asked us to wait."""

    reason: str  # e.g. "http 429", "timeout"
    retry_after_s: float | None


class MissingKeyError(RuntimeError, PipelineError):
    """The environment variable that should hold an API key is unset."""


@dataclass(frozen=True)
class RepairTurn:
    """The one repair attempt: the unusable first answer, and the user turn naming why."""

    failed_answer: str
    message: str


class Provider(ABC):
    """One wire format: client, request body, answer parser, batch API. A subclass writes its
    request body and reads its responses; the client (OpenAI's SDK) and the batch calls (none)
    are defaults it may override."""

    name: ClassVar[str]
    needs_key: ClassVar[bool] = True  # a keyless (local) server is reachable without one
    has_batches: ClassVar[bool] = False
    path: ClassVar[str]  # the completion endpoint, relative to the SDK's base URL

    def make_client(self, key: str, settings: LLMSettings) -> Any:
        """An async SDK client with its own retries off (the runner retries with backoff)."""
        # The SDKs load here, not at import: a pipeline without LLM backends never pays for them.
        import openai

        return openai.AsyncOpenAI(
            api_key=key, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s
        )

    @abstractmethod
    def request_body(
        self, settings: LLMSettings, prompt: Prompt, repair: RepairTurn | None = None
    ) -> dict[str, Any]:
        """The JSON request body (no credentials); with ``repair``, the repair attempt: the
        first answer as the assistant turn, then a user turn naming what was wrong."""

    @abstractmethod
    def parse(self, response: dict[str, Any]) -> Completion:
        """Read a response JSON (a live answer or one batch result) into a Completion."""

    async def submit_batch(self, client: Any, bodies: dict[str, dict[str, Any]]) -> str:
        """Submit ``custom_id -> body`` as one batch; its id."""
        raise ValueError(f"provider {self.name} has no batch API")

    async def poll_batch(self, client: Any, batch_id: str) -> tuple[Any, str | None]:
        """(the batch, None) once it ended, else (the batch, its status)."""
        raise ValueError(f"provider {self.name} has no batch API")

    async def batch_results(self, client: Any, batch: Any) -> dict[str, dict[str, Any] | None]:
        """custom_id -> response JSON (None for an errored or expired request)."""
        raise ValueError(f"provider {self.name} has no batch API")


def _repair_messages(repair: RepairTurn | None) -> list[dict[str, Any]]:
    if repair is None:
        return []
    return [
        {"role": "assistant", "content": repair.failed_answer or "(empty)"},
        {"role": "user", "content": repair.message},
    ]


class AnthropicProvider(Provider):
    name = "anthropic"
    has_batches = True
    path = "/v1/messages"  # Anthropic's base URL has no /v1

    def make_client(self, key: str, settings: LLMSettings) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=key, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s
        )

    def request_body(
        self, settings: LLMSettings, prompt: Prompt, repair: RepairTurn | None = None
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if prompt.image is not None:
            content.append(_anthropic_image(prompt.image))
        content.append({"type": "text", "text": prompt.user})
        body: dict[str, Any] = {
            "model": settings.model,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "system": prompt.system,
            "messages": [{"role": "user", "content": content}, *_repair_messages(repair)],
        }
        if settings.structured_output:
            schema = prompt.answer.json_schema
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return body

    def parse(self, response: dict[str, Any]) -> Completion:
        text = "".join(
            block.get("text", "")
            for block in response.get("content") or []
            if block.get("type") == "text"
        )
        usage = response.get("usage") or {}
        stop = response.get("stop_reason")
        return Completion(
            text=text,
            refusal="model refused (stop_reason=refusal)" if stop == "refusal" else None,
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            stop_reason=stop,
        )

    async def submit_batch(self, client: Any, bodies: dict[str, dict[str, Any]]) -> str:
        batch = await client.messages.batches.create(
            requests=[{"custom_id": key, "params": body} for key, body in bodies.items()]
        )
        return batch.id

    async def poll_batch(self, client: Any, batch_id: str) -> tuple[Any, str | None]:
        batch = await client.messages.batches.retrieve(batch_id)
        ended = batch.processing_status == "ended"
        return batch, None if ended else batch.processing_status

    async def batch_results(self, client: Any, batch: Any) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        async for entry in await client.messages.batches.results(batch.id):
            ok = entry.result.type == "succeeded"
            out[entry.custom_id] = entry.result.message.model_dump() if ok else None
        return out


class OpenAICompatibleProvider(Provider):
    """Chat completions at any ``base_url``: vLLM, Ollama, gateways. No batch API assumed."""

    name = "openai_compatible"
    needs_key = False
    path = "/chat/completions"  # the base URL ends in /v1
    token_field = "max_tokens"  # what compatible servers know

    def request_body(
        self, settings: LLMSettings, prompt: Prompt, repair: RepairTurn | None = None
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt.user}]
        if prompt.image is not None:
            content.append(_openai_image(prompt.image))
        body: dict[str, Any] = {
            "model": settings.model,
            "temperature": settings.temperature,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": content},
                *_repair_messages(repair),
            ],
        }
        body[self.token_field] = settings.max_tokens
        if settings.structured_output:
            answer = prompt.answer
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": answer.schema_name,
                    "schema": answer.json_schema,
                    "strict": True,
                },
            }
        return body

    def parse(self, response: dict[str, Any]) -> Completion:
        choices = response.get("choices") or [{}]
        message = choices[0].get("message") or {}
        stop = choices[0].get("finish_reason")
        refusal = message.get("refusal")
        if refusal is None and stop == "content_filter":
            refusal = "answer withheld (finish_reason=content_filter)"
        usage = response.get("usage") or {}
        return Completion(
            text=message.get("content") or "",
            refusal=refusal,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            stop_reason=stop,
        )


class OpenAIProvider(OpenAICompatibleProvider):
    """OpenAI itself: a key is required, the batch API exists."""

    name = "openai"
    needs_key = True
    has_batches = True
    token_field = "max_completion_tokens"  # OpenAI's newer models take only this one
    _DONE = ("completed", "failed", "expired", "cancelled")

    async def submit_batch(self, client: Any, bodies: dict[str, dict[str, Any]]) -> str:
        lines = "".join(
            json.dumps(
                {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}
            )
            + "\n"
            for key, body in bodies.items()
        )
        upload = await client.files.create(
            file=("batch.jsonl", io.BytesIO(lines.encode("utf-8"))), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        return batch.id

    async def poll_batch(self, client: Any, batch_id: str) -> tuple[Any, str | None]:
        batch = await client.batches.retrieve(batch_id)
        return batch, None if batch.status in self._DONE else batch.status

    async def batch_results(self, client: Any, batch: Any) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        if batch.output_file_id:
            content = await client.files.content(batch.output_file_id)
            for line in content.text.splitlines():
                if line.strip():
                    entry = json.loads(line)
                    response = entry.get("response") or {}
                    ok = response.get("status_code") == 200
                    out[entry["custom_id"]] = response.get("body") if ok else None
        return out


PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (AnthropicProvider(), OpenAIProvider(), OpenAICompatibleProvider())
}


def settings_problems(settings: LLMSettings) -> Iterator[tuple[str, str]]:
    """``(key, message)`` for settings the named provider cannot serve (no key for a provider
    that needs one, batches where it has no batch API)."""
    provider = PROVIDERS.get(settings.provider)
    if provider is None:
        yield "provider", f"unknown provider '{settings.provider}' (known: {', '.join(PROVIDERS)})"
        return
    if settings.api_key_env is None and provider.needs_key:
        yield "api_key_env", f"null, but provider {provider.name} needs a key"
    if settings.batch and not provider.has_batches:
        yield "batch", f"true, but provider {provider.name} has no batch API"


def provider_of(settings: LLMSettings) -> Provider:
    """The provider object that ``settings.provider`` names."""
    try:
        return PROVIDERS[settings.provider]
    except KeyError:
        known = ", ".join(PROVIDERS)
        raise ValueError(f"unknown provider '{settings.provider}' (known: {known})") from None


def _anthropic_image(image: ImagePart) -> dict[str, Any]:
    if image.url is not None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": image.media_type, "data": image.data_base64},
    }


def _openai_image(image: ImagePart) -> dict[str, Any]:
    url = image.url or f"data:{image.media_type};base64,{image.data_base64}"
    return {"type": "image_url", "image_url": {"url": url}}


def read_api_key(settings: LLMSettings) -> str:
    """The key from ``os.environ[settings.api_key_env]``; a keyless server gets :data:`KEYLESS_SERVER_KEY`."""
    provider = provider_of(settings)
    if settings.api_key_env is None:
        if provider.needs_key:
            raise MissingKeyError(f"{settings.provider}: params must name api_key_env")
        return KEYLESS_SERVER_KEY
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise MissingKeyError(
            f"{settings.provider} model {settings.model}: environment variable "
            f"{settings.api_key_env} is not set"
        )
    return key


def make_client(settings: LLMSettings) -> Any:
    """An async SDK client for ``settings`` with the key from the environment."""
    return provider_of(settings).make_client(read_api_key(settings), settings)


async def complete(client: Any, settings: LLMSettings, body: dict[str, Any]) -> Completion:
    """One live call, no retries. Raises the SDK's exceptions (see :func:`classify_error`).

    The body goes through the SDK's own request machinery (authentication, timeouts, HTTP
    error classes) but not through ``messages.create`` / ``chat.completions.create``: their
    per-call request transformation and response models cost about 10 ms of CPU per request
    (measured), which at 32 requests in flight is a large share of the throughput bound,
    and the answer is read as plain JSON by the provider's parser anyway.
    """
    provider = provider_of(settings)
    response = await client.post(provider.path, cast_to=object, body=body)
    return provider.parse(response)


async def wait_for_batch(client: Any, settings: LLMSettings, batch_id: str, poll_s: float) -> Any:
    """Poll a batch every ``poll_s`` seconds until it ended; the ended batch."""
    provider = provider_of(settings)
    while True:
        batch, status = await provider.poll_batch(client, batch_id)
        if status is None:
            return batch
        log.info("batch %s: %s; next poll in %.0f s", batch_id, status, poll_s)
        await asyncio.sleep(poll_s)


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: fall back to our own backoff
    return None


def classify_error(err: BaseException) -> Transient | None:
    """A :class:`Transient` for errors worth retrying (429, 408, 409, 5xx, timeouts, lost
    connections); None for permanent ones (bad request, auth), which must fail loudly."""
    import anthropic
    import openai

    for sdk in (anthropic, openai):
        if isinstance(err, sdk.APITimeoutError):
            return Transient("timeout", None)
        if isinstance(err, sdk.APIConnectionError):
            return Transient("connection error", None)
        if isinstance(err, sdk.APIStatusError):
            status = err.status_code
            if status in (408, 409, 429) or status >= 500:
                return Transient(f"http {status}", _retry_after(err.response.headers))
            return None
    return None


def describe_error(err: BaseException) -> str:
    """A one-line description safe to log: the type and HTTP status, never request headers."""
    status = getattr(err, "status_code", None)
    return f"{type(err).__name__}" + (f" (http {status})" if status is not None else "")
