"""Streamed, resumable, size-checked download of one public file.

The bytes go to ``<dest>.part`` first; only a complete file (its size equal to what the server
announced, and its SHA-256 equal to ``sha256`` when one is given) is renamed to ``dest``. A
broken transfer keeps the ``.part`` file and the next call resumes it with an HTTP ``Range``
request. The Amazon servers publish no checksums; their gzip files carry a CRC-32 of the
content, which the loaders verify when they read to the end.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from deepinterestgr.common.errors import PipelineError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # per socket operation, not for the whole file


class DownloadError(RuntimeError, PipelineError):
    """A file could not be downloaded completely; the message says why and what to do."""


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already exists; return ``dest``.

    Raises :class:`DownloadError` with a one-line message when the server is unreachable,
    answers with an error, or sends fewer or more bytes than it announced.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:  # server ignored the range: start over
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            _stream(response, part, offset, total, dest.name)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"cannot download {url}: {reason} (offline? fetch it by hand and set "
            f"download.local_dir to its folder; a partial file is resumed from {part})"
        ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"incomplete download of {url}: got {size:,} of {total:,} bytes; rerun to resume "
            f"from {part}"
        )
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256:
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: sha256 {digest}, expected {sha256}")
    os.replace(part, dest)
    log.info("downloaded %s (%s bytes) to %s", url, f"{size:,}", dest)
    return dest


def _stream(response, part: Path, offset: int, total: int | None, name: str) -> None:
    mode = "ab" if offset else "wb"
    with (
        open(part, mode) as handle,
        tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=name) as bar,
    ):
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except http.client.IncompleteRead as err:
                # The server closed early: keep what arrived so a rerun resumes after it.
                handle.write(err.partial)
                bar.update(len(err.partial))
                break
            if not chunk:
                break
            handle.write(chunk)
            bar.update(len(chunk))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
