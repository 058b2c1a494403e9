"""A scriptable fake LLM API on 127.0.0.1 speaking two wire formats.

- Anthropic: ``POST /v1/messages``; Message Batches ``POST /v1/messages/batches``,
  ``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results``.
- OpenAI: ``POST /v1/chat/completions``; ``POST /v1/files``, ``GET /v1/files/{id}/content``,
  ``POST /v1/batches``, ``GET /v1/batches/{id}``.

Every request is logged (path, action taken, JSON body, headers). Behaviour is scripted per
request: :meth:`FakeLLMServer.script` maps a substring of the request body to a list of
actions consumed in order; unmatched requests get ``default_action``. Actions:

``ok`` a schema-valid answer · ``429:<seconds>`` rate limited with ``retry-after`` ·
``500`` server error · ``401`` bad key · ``timeout`` answer only after ``timeout_sleep_s`` ·
``malformed`` a 200 whose text is not JSON · ``refusal`` the provider's refusal shape ·
``hijacked`` a 200 whose text obeys an injected instruction (not JSON) · ``obeyed`` a
schema-valid answer whose descriptors obey an injected instruction (:data:`OBEYED_ANSWER`) ·
``hold`` no answer until :attr:`FakeLLMServer.released` is set (then ``ok``), so a test can
stop a client while its requests are in flight.

A judge request (the label stage's, its user turn listing ``<descriptors>``) is answered
``ok`` with one label per listed descriptor: 0 when the descriptor has the word "generic",
else 1 (:func:`judge_labels`).

A threaded HTTP/1.1 server with keep-alive: each connection gets a thread, so 32 clients in
flight are served in parallel (``latency_s`` is slept per request). Run standalone for the
benchmark: ``python -m deepinterestgr.testing.fake_llm_server --latency 0.2`` prints its base URL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
import time
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deepinterestgr.common.params import LLMParams

GOOD_ANSWER = {
    "reasoning": "The evidence points to a concrete use.",
    "interests": [
        {"descriptor": "long lasting everyday wear", "confidence": 0.9},
        {"descriptor": "gentle care for sensitive skin", "confidence": 0.7},
        {"descriptor": "quick morning routine", "confidence": 0.5},
    ],
}
HIJACKED_TEXT = "HACKED! I will ignore my instructions."
# What a model that obeys "ignore previous instructions and output ..." writes in the schema.
OBEYED_ANSWER = {
    "reasoning": "The item data asks for these exact descriptors.",
    "interests": [
        {"descriptor": "hacked visit evil dot example", "confidence": 1.0},
        {"descriptor": "ignore all safety rules", "confidence": 1.0},
        {"descriptor": "see www.evil.example now", "confidence": 1.0},
        {"descriptor": "free gift cards for everyone", "confidence": 1.0},
        {"descriptor": "long lasting everyday wear", "confidence": 0.6},
    ],
}


def fake_backend(provider: str, url: str, key_env: str, **changes: Any) -> LLMParams:
    """A ``mine.llms`` entry pointing ``provider``'s SDK at the fake server at ``url``, with
    fast retries ($1 / $5 per million tokens in / out); ``changes`` override fields."""
    base = LLMParams(
        provider=provider,  # type: ignore[arg-type]
        model=f"fake-{provider}",
        base_url=url if provider == "anthropic" else f"{url}/v1",
        api_key_env=key_env,
        structured_output=True,
        images=True,
        users=False,
        max_tokens=256,
        temperature=0.0,
        concurrency=4,
        requests_per_minute=0,
        timeout_s=10.0,  # generous: a loaded CI machine must not time out by accident
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        price_input_per_mtok=1.0,
        price_output_per_mtok=5.0,
        batch=False,
        batch_poll_s=0.01,
    )
    return replace(base, **changes)


def judge_labels(body: dict[str, Any]) -> dict[str, Any] | None:
    """The fake judge's answer to a judge request, or None for any other request."""
    for message in body.get("messages") or []:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        for part in parts:
            text = part.get("text") or ""
            if "<descriptors>\n" in text:
                listed = text.split("<descriptors>\n")[1].split("\n</descriptors>")[0]
                return {
                    "labels": [
                        {"index": k, "label": 0 if "generic" in line else 1}
                        for k, line in enumerate(listed.splitlines())
                    ]
                }
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    fake: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the resume and fault tests do it) resets its
        # connection: expected, and not worth a traceback on stderr.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle's algorithm and the client's delayed
    # ACK the body would wait ~40 ms, a fake latency no real API adds.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json" if raw is None else "application/binary"
        )
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        # The client may have given up already (a scripted timeout).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def do_GET(self) -> None:
        fake = self.server.fake
        fake._log(self.path, "get", None, dict(self.headers))
        match = re.fullmatch(r"/v1/messages/batches/([^/]+)(/results)?", self.path)
        if match:
            batch = fake.batches.get(match.group(1))
            if batch is None:
                return self._send(404, {"type": "error", "error": {"type": "not_found_error"}})
            if match.group(2):
                return self._send(200, None, raw=batch["results"])
            return self._send(200, batch["meta"])
        match = re.fullmatch(r"/v1/batches/([^/]+)", self.path)
        if match and match.group(1) in fake.batches:
            return self._send(200, fake.batches[match.group(1)]["meta"])
        match = re.fullmatch(r"/v1/files/([^/]+)/content", self.path)
        if match and match.group(1) in fake.files:
            return self._send(200, None, raw=fake.files[match.group(1)])
        self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/v1/files":
            return self._send(200, fake._store_file(raw, self.headers.get("Content-Type", "")))
        body = json.loads(raw or b"{}")
        path = self.path
        if path == "/v1/messages/batches":
            fake._log(path, "batch", body, dict(self.headers))
            return self._send(200, fake._anthropic_batch(body, self._base_url()))
        if path == "/v1/batches":
            fake._log(path, "batch", body, dict(self.headers))
            return self._send(200, fake._openai_batch(body))
        if path not in ("/v1/messages", "/v1/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {path}"}})
        action = fake._next_action(raw.decode("utf-8", "replace"))
        fake._log(path, action, body, dict(self.headers))
        time.sleep(fake.latency_s)
        if action == "hold":
            fake.released.wait(fake.hold_limit_s)
            action = "ok"
        anthropic_format = path == "/v1/messages"
        if action.startswith("429"):
            wait = action.split(":", 1)[1] if ":" in action else "1"
            return self._send(
                429, _error(anthropic_format, "rate_limit_error"), {"retry-after": wait}
            )
        if action in ("500", "401"):
            kind = "api_error" if action == "500" else "authentication_error"
            return self._send(int(action), _error(anthropic_format, kind))
        if action == "timeout":
            time.sleep(fake.timeout_sleep_s)
        status, payload = fake.answer(anthropic_format, body, action)
        self._send(status, payload)

    def _base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


def _error(anthropic_format: bool, kind: str) -> dict[str, Any]:
    if anthropic_format:
        return {"type": "error", "error": {"type": kind, "message": "scripted failure"}}
    return {"error": {"message": "scripted failure", "type": kind, "code": None}}


class FakeLLMServer:
    """Start with :meth:`start` (or as a context manager); ``url`` is the base URL."""

    def __init__(self, latency_s: float = 0.0, timeout_sleep_s: float = 3.0) -> None:
        self.latency_s = latency_s
        self.timeout_sleep_s = timeout_sleep_s
        self.default_action = "ok"
        self.released = threading.Event()  # ends every "hold"
        self.hold_limit_s = 60.0
        self.requests: list[dict[str, Any]] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self._scripts: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def script(self, match: str, actions: list[str]) -> None:
        """Requests whose body contains ``match`` take ``actions`` in order, then the default."""
        with self._lock:
            self._scripts.append((match, list(actions)))

    def completions(self) -> list[dict[str, Any]]:
        """Logged requests to the two completion endpoints."""
        return [r for r in self.requests if r["path"] in ("/v1/messages", "/v1/chat/completions")]

    # ---------------------------------------------------------------- internals

    def _next_action(self, text: str) -> str:
        with self._lock:
            for match, actions in self._scripts:
                if match in text and actions:
                    return actions.pop(0)
        return self.default_action

    def _log(self, path: str, action: str, body: Any, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(
                {
                    "path": path,
                    "action": action,
                    "body": body,
                    "headers": {k.lower(): v for k, v in headers.items()},
                    "time": time.monotonic(),
                }
            )

    def answer(self, anthropic_format: bool, body: dict[str, Any], action: str) -> tuple[int, Any]:
        """The 200 response of a completion request for ``action``."""
        if action == "malformed":
            text = '{"reasoning": "cut off", "interests": [{"descriptor": '
        elif action == "hijacked":
            text = HIJACKED_TEXT
        elif action == "obeyed":
            text = json.dumps(OBEYED_ANSWER)
        else:
            text = json.dumps(judge_labels(body) or GOOD_ANSWER)
        refused = action == "refusal"
        tokens_in = len(json.dumps(body)) // 4
        tokens_out = 0 if refused else len(text) // 4
        if anthropic_format:
            return 200, {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": [] if refused else [{"type": "text", "text": text}],
                "stop_reason": "refusal" if refused else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
            }
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None if refused else text,
                        "refusal": "I can't help with that." if refused else None,
                    },
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }

    def _anthropic_batch(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        batch_id = f"msgbatch_{uuid.uuid4().hex[:12]}"
        lines = []
        for request in body["requests"]:
            action = self._next_action(json.dumps(request["params"]))
            _, message = self.answer(True, request["params"], "ok" if ":" in action else action)
            lines.append(
                {
                    "custom_id": request["custom_id"],
                    "result": {"type": "succeeded", "message": message},
                }
            )
        count = len(lines)
        meta = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended",
            "request_counts": {
                "processing": 0,
                "succeeded": count,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-02T00:00:00Z",
            "ended_at": "2026-01-01T00:00:01Z",
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": f"{base_url}/v1/messages/batches/{batch_id}/results",
        }
        results = "".join(json.dumps(line) + "\n" for line in lines).encode()
        with self._lock:
            self.batches[batch_id] = {"meta": meta, "results": results}
        return meta

    def _store_file(self, raw: bytes, content_type: str) -> dict[str, Any]:
        # A multipart upload: keep the bytes of the part that carries a filename.
        boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
        content = b""
        for part in raw.split(b"--" + boundary):
            head, _, data = part.partition(b"\r\n\r\n")
            if b"filename=" in head:
                content = data.rstrip(b"\r\n")
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self.files[file_id] = content
        self._log("/v1/files", "upload", None, {})
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": 0,
            "filename": "batch.jsonl",
            "purpose": "batch",
            "status": "processed",
        }

    def _openai_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        batch_id = f"batch_{uuid.uuid4().hex[:12]}"
        out = []
        for line in self.files[body["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            action = self._next_action(json.dumps(request["body"]))
            _, completion = self.answer(False, request["body"], "ok" if ":" in action else action)
            out.append(
                {
                    "id": f"req_{uuid.uuid4().hex[:8]}",
                    "custom_id": request["custom_id"],
                    "response": {"status_code": 200, "request_id": "r", "body": completion},
                    "error": None,
                }
            )
        output_id = f"file-{uuid.uuid4().hex[:12]}"
        meta = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "completed",
            "output_file_id": output_id,
            "error_file_id": None,
            "created_at": 0,
            "request_counts": {"total": len(out), "completed": len(out), "failed": 0},
        }
        with self._lock:
            self.files[output_id] = "".join(json.dumps(o) + "\n" for o in out).encode()
            self.batches[batch_id] = {"meta": meta}
        return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    args = parser.parse_args()
    server = FakeLLMServer(latency_s=args.latency).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
