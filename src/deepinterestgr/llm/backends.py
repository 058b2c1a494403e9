"""LLM providers behind one call: Anthropic Messages, OpenAI chat completions, and any
OpenAI-compatible server (vLLM, Ollama, a local gateway) at a configurable ``base_url``.

Each provider turns a :class:`~deepinterestgr.interests.prompts.Prompt` into its own wire format
(structured JSON-schema output where the provider has it, images as its own content part)
and its answer into a :class:`Completion`. The same request body serves a live call and a
line of a batch job, and the same parser reads a live answer and a batch result, so both
paths agree byte for byte.

API keys are read from the environment variable named in params at client construction and
go nowhere else: not into request bodies we log, cache keys, records or error messages.
The SDKs' own retries are switched off (``max_retries=0``); :mod:`deepinterestgr.llm.runner`
owns retries so it can honour ``retry-after`` and count every attempt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from deepinterestgr.common.errors import PipelineError
from deepinterestgr.interests.prompts import (
    ANSWER_SCHEMA,
    SCHEMA_NAME,
    ImagePart,
    Prompt,
    repair_message,
)

PROVIDERS = ("anthropic", "openai", "openai_compatible")
# OpenAI-compatible servers started without authentication still need a non-empty key.
_KEYLESS_PLACEHOLDER = "not-needed"


class LLMSettings(Protocol):
    """What a backend needs from its params entry (see ``LLMParams`` in params.py)."""

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


def read_api_key(settings: LLMSettings) -> str:
    """The key from ``os.environ[settings.api_key_env]``; keyless servers get a placeholder."""
    if settings.api_key_env is None:
        if settings.provider != "openai_compatible":
            raise MissingKeyError(f"{settings.provider}: params must name api_key_env")
        return _KEYLESS_PLACEHOLDER
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise MissingKeyError(
            f"{settings.provider} model {settings.model}: environment variable "
            f"{settings.api_key_env} is not set"
        )
    return key


def make_client(settings: LLMSettings) -> Any:
    """An async SDK client with its own retries off (mining retries with backoff)."""
    # The SDKs load here, not at import: a pipeline without LLM backends never pays for them.
    import anthropic
    import openai

    key = read_api_key(settings)
    if settings.provider == "anthropic":
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s
        )
    if settings.provider in ("openai", "openai_compatible"):
        return openai.AsyncOpenAI(
            api_key=key, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s
        )
    raise ValueError(f"unknown provider '{settings.provider}' (known: {', '.join(PROVIDERS)})")


# --------------------------------------------------------------------------- request bodies


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


def request_body(
    settings: LLMSettings,
    prompt: Prompt,
    failed_answer: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The provider's JSON request body (no credentials).

    With ``failed_answer`` and ``error`` the body is the repair attempt: the first answer as
    the assistant turn, then a user turn naming what was wrong.
    """
    repair = (
        []
        if failed_answer is None
        else [
            {"role": "assistant", "content": failed_answer or "(empty)"},
            {"role": "user", "content": repair_message(error or "unusable answer")},
        ]
    )
    if settings.provider == "anthropic":
        content: list[dict[str, Any]] = []
        if prompt.image is not None:
            content.append(_anthropic_image(prompt.image))
        content.append({"type": "text", "text": prompt.user})
        body: dict[str, Any] = {
            "model": settings.model,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "system": prompt.system,
            "messages": [{"role": "user", "content": content}, *repair],
        }
        if settings.structured_output:
            body["output_config"] = {"format": {"type": "json_schema", "schema": ANSWER_SCHEMA}}
        return body
    content = [{"type": "text", "text": prompt.user}]
    if prompt.image is not None:
        content.append(_openai_image(prompt.image))
    body = {
        "model": settings.model,
        "temperature": settings.temperature,
        "messages": [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": content},
            *repair,
        ],
    }
    # OpenAI's newer models take max_completion_tokens; compatible servers know max_tokens.
    token_field = "max_completion_tokens" if settings.provider == "openai" else "max_tokens"
    body[token_field] = settings.max_tokens
    if settings.structured_output:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": ANSWER_SCHEMA, "strict": True},
        }
    return body


# --------------------------------------------------------------------------- answers


def parse_completion(provider: str, response: dict[str, Any]) -> Completion:
    """Read a provider's response JSON (a live answer or one batch result) into a Completion."""
    if provider == "anthropic":
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


# Request paths relative to each SDK's base URL (Anthropic's base URL has no /v1; OpenAI's has).
_PATHS = {
    "anthropic": "/v1/messages",
    "openai": "/chat/completions",
    "openai_compatible": "/chat/completions",
}


# Fields every SDK version names as arguments; anything else travels in ``extra_body``.
_TYPED_ARGUMENTS = frozenset(("model", "max_tokens", "messages", "system"))


async def complete(client: Any, settings: LLMSettings, body: dict[str, Any]) -> Completion:
    """One live call, no retries. Raises the SDK's exceptions (see :func:`classify_error`).

    The body goes through the SDK's own request machinery (authentication, timeouts, HTTP
    error classes) but not through ``messages.create`` / ``chat.completions.create``: their
    per-call request transformation and response models cost about 10 ms of CPU per request
    (measured), which at 32 requests in flight is a large share of the throughput bound,
    and the answer is read as plain JSON by :func:`parse_completion` anyway.
    """
    post = getattr(client, "post", None)
    if post is not None:
        response = await post(_PATHS[settings.provider], cast_to=object, body=body)
        return parse_completion(settings.provider, response)
    # A client offering only the typed methods (a stand-in): same body, same parser.
    create = (
        client.messages.create
        if settings.provider == "anthropic"
        else (client.chat.completions.create)
    )
    known = {k: v for k, v in body.items() if k in _TYPED_ARGUMENTS}
    extra = {k: v for k, v in body.items() if k not in _TYPED_ARGUMENTS}
    answer = await create(**known, extra_body=extra or None)
    return parse_completion(settings.provider, answer.model_dump())


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
