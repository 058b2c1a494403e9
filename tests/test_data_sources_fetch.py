"""The downloader against a local HTTP server: progress, size check, resume, offline error."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deepinterestgr.data_sources.fetch import DownloadError, download

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file (with Range support) and a lying /truncated."""

    def do_GET(self) -> None:
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
        body = PAYLOAD[start:]
        if self.path == "/missing":
            self.send_error(404, "Not Found")
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/truncated":  # announces the whole file, sends a third of it
            body = body[: len(body) // 3]
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_writes_the_file_and_checks_its_checksum(server, tmp_path, capsys):
    dest = tmp_path / "raw" / "reviews.json.gz"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(f"{server}/file", dest, sha256=digest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name(dest.name + ".part").exists()
    progress = capsys.readouterr().err  # the tqdm bar, in bytes
    assert "100%|" in progress and "102k/102k" in progress
    # An existing file is not downloaded again (the server is not asked).
    assert download("http://127.0.0.1:1/never-asked", dest) == dest


def test_a_checksum_mismatch_is_an_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"checksum mismatch for http://.*/file: sha256 "):
        download(f"{server}/file", tmp_path / "f", sha256="0" * 64)
    assert not (tmp_path / "f").exists()


def test_a_truncated_transfer_is_an_error_and_the_next_call_resumes(server, tmp_path):
    dest = tmp_path / "f"
    with pytest.raises(
        DownloadError,
        match=r"^incomplete download of http://127\.0\.0\.1:\d+/truncated: got 34,133 of "
        r"102,400 bytes; rerun to resume from .*f\.part$",
    ):
        download(f"{server}/truncated", dest)
    assert not dest.exists()
    assert (tmp_path / "f.part").stat().st_size == 34_133
    # The server now answers properly; the download resumes after the 34,133 bytes it has.
    download(f"{server}/file", dest)
    assert dest.read_bytes() == PAYLOAD


def test_an_http_error_is_one_line(server, tmp_path):
    with pytest.raises(
        DownloadError, match=r"^cannot download http://.*/missing: HTTP 404 Not Found$"
    ):
        download(f"{server}/missing", tmp_path / "f")


def test_no_network_gives_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/reviews_Beauty_5.json.gz"
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "f", timeout=5)
    message = str(info.value)
    assert message.startswith(f"cannot download {url}: ")
    assert "refused" in message and "download.local_dir" in message
    assert "\n" not in message
    assert not Path(tmp_path / "f").exists()
