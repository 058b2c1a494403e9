"""A persistent, content-addressed cache of LLM answers: a rerun pays for nothing twice.

The key is the SHA-256 of everything that determines an answer: backend name, provider,
model, generation settings and the rendered prompt (its kind, version, text and image
bytes). Changing any of them is a new key, so a stale answer is never served; keeping them
serves the stored answer with no request at all.

Layout: ``<root>/<key[:2]>/<key>.json``, one file per answer, written to a temporary file,
fsynced and renamed into place. A ``kill -9`` at any moment therefore leaves only whole
answers behind and loses at most the requests still in flight. (The directory is not
fsynced after the rename: a power cut may forget the last few answers, never tear one;
they are then asked again. Measured: the extra fsync cost ~15 % of throughput.)

Records hold answers, usage and failure reasons, never credentials (the key material holds
no API key either).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from deepinterestgr.common.io import FILE_MODE


def cache_key(material: dict[str, Any]) -> str:
    """Hex SHA-256 of ``material`` serialised canonically (sorted keys, no spaces)."""
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AnswerCache:
    """One JSON file per answer under ``root``; safe against crashes mid-write."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root = str(self.root)

    def path(self, key: str) -> Path:
        return Path(self._path(key))

    def _path(self, key: str) -> str:
        # Plain strings, not pathlib: a cached rerun looks up every answer of the catalogue.
        return os.path.join(self._root, key[:2], key + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record, or None. A file that is not valid JSON counts as absent."""
        try:
            with open(self._path(key), "rb") as handle:
                return json.loads(handle.read())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Only a disk fault can produce this (writes are atomic): ask again.
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` atomically (write, fsync, rename)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, FILE_MODE)  # the user's umask, not mkstemp's 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, ensure_ascii=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json"))
