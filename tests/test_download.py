"""Tests for text8_download.sh against a local HTTP server; they never touch the internet.

The server serves a small zip holding one member `text8` (the shape of the course's
text8.zip), honours HTTP Range requests so that resuming can be tested, and can be told to
fail with an HTTP status or to stall half way.
"""
import http.server
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile

import pytest

SCRIPT = str(pathlib.Path(__file__).resolve().parent.parent / "text8_download.sh")
BASH = shutil.which("bash")
FOUND = "Found and verified text8.zip"
PREFIX = "text8_download.sh: "
NOTE = PREFIX + "note: "
# The course's `maybe_download('text8.zip', 31344016)` from `url = 'http://mattmahoney.net/dc/'`.
COURSE_URL = "http://mattmahoney.net/dc/text8.zip"
COURSE_SIZE = 31_344_016
# What the script runs besides curl or wget and its zip checker (unzip or python3).
BASE_TOOLS = ["bash", "wc", "rm", "mv"]


class Text8Server:
    """Serves `body` at every path on 127.0.0.1, recording each request's Range header."""

    def __init__(self):
        self.body = b""
        self.status = 200  # anything else is sent as an HTTP error
        self.stall_after = None  # bytes to send before waiting for `release`
        self.release = threading.Event()
        self.ranges = []  # one per request: its Range header, or None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
        self.httpd.daemon_threads = True
        self.httpd.text8 = self
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/dc/text8.zip"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET with `Range: bytes=START-[END]` answered by 206 Partial Content, as servers do."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server.text8
        requested = self.headers.get("Range")
        server.ranges.append(requested)
        if server.status != 200:
            self.send_error(server.status)
            return
        body = server.body
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", requested or "")
        if match:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else len(body) - 1, len(body) - 1)
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            chunk = body[start:end + 1]
        else:
            self.send_response(200)
            chunk = body
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if server.stall_after is None:
            self.wfile.write(chunk)
            return
        self.wfile.write(chunk[:server.stall_after])
        self.wfile.flush()
        server.release.wait(10)


def make_zip(path, member="text8", words=40_000):
    """A zip like text8.zip: one deflated member of random lower-case words (~150 kB)."""
    rng = random.Random(6)
    vocabulary = ["anarchism", "originated", "as", "a", "term", "of", "abuse", "first",
                  "used", "against", "early", "working", "class", "radicals", "the", "in"]
    text = " " + " ".join(rng.choice(vocabulary) + str(rng.randrange(100))
                          for _ in range(words))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, text)
    return pathlib.Path(path).read_bytes()


def flip_middle(data):
    """`data` of the same size with 16 bytes in the middle inverted."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:]


@pytest.fixture
def server():
    text8_server = Text8Server()
    yield text8_server
    text8_server.close()


@pytest.fixture
def body(tmp_path, server):
    """The served zip's bytes."""
    server.body = make_zip(tmp_path / "served.zip")
    return server.body


@pytest.fixture
def data_dir(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    return directory


def tool_path(tmp_path, tools):
    """A directory for PATH holding symlinks to `tools` only."""
    directory = tmp_path / ("bin-" + "-".join(tools))
    directory.mkdir()
    for tool in tools:
        found = os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (directory / tool).symlink_to(found)
    return str(directory)


def script_env(directory, url, size, path=None):
    """The environment: TEXT8_URL=url, TEXT8_SIZE=size (none if None: the script's default),
    no proxies, HOME beside `directory`."""
    env = {key: value for key, value in os.environ.items()
           if not key.lower().endswith("_proxy") and not key.startswith("TEXT8_")}
    home = pathlib.Path(directory).parent / "home"  # wget writes ~/.wget-hsts
    home.mkdir(exist_ok=True)
    env.update(TEXT8_URL=url, HOME=str(home), no_proxy="*")
    if size is not None:
        env["TEXT8_SIZE"] = str(size)
    if path is not None:
        env["PATH"] = path
    return env


def run(directory, url, size, path=None):
    """Runs the script on `directory`; see script_env."""
    env = script_env(directory, url, size, path)
    return subprocess.run([BASH, SCRIPT, str(directory)], env=env, capture_output=True,
                          text=True, timeout=60)


def error_lines(result):
    """stderr's lines other than notes; every one is the script's, so it has the prefix."""
    return [line for line in result.stderr.splitlines() if not line.startswith(NOTE)]


def assert_failed(result, *words):
    """Non-zero exit, and the script's last stderr line names `words`."""
    assert result.returncode != 0, result.stdout + result.stderr
    last = error_lines(result)[-1]
    assert last.startswith(PREFIX), result.stderr
    for word in words:
        assert word in last, result.stderr
    assert FOUND not in result.stdout


def files(directory):
    return sorted(path.name for path in directory.iterdir())


def zip_of_size(path, size):
    """A sound zip of exactly `size` bytes holding one stored member `text8`."""
    overhead = len(make_stored_zip(path, 0))
    return make_stored_zip(path, size - overhead)


def make_stored_zip(path, length):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("text8", b" anarchism" * (length // 10) + b" " * (length % 10))
    return pathlib.Path(path).read_bytes()


def test_the_defaults_are_the_courses(tmp_path):
    """Without TEXT8_URL and TEXT8_SIZE the script names the course's URL and size."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TEXT8_")}
    result = subprocess.run([BASH, SCRIPT, "--help"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"Download {COURSE_URL} into DIR/text8.zip" in result.stdout
    assert f"verify it: {COURSE_SIZE} bytes" in result.stdout


def test_the_default_size_is_the_courses(tmp_path, server, data_dir):
    """TEXT8_URL only: a sound zip of the course's 31,344,016 bytes is accepted with no
    note, one byte fewer is refused naming the expected size."""
    server.body = zip_of_size(tmp_path / "served.zip", COURSE_SIZE)
    assert len(server.body) == COURSE_SIZE
    result = run(data_dir, server.url, None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no "TEXT8_SIZE=... replaces the expected size" note
    assert result.stdout.splitlines()[-1] == FOUND
    assert (data_dir / "text8.zip").stat().st_size == COURSE_SIZE
    (data_dir / "text8.zip").unlink()
    server.body = zip_of_size(tmp_path / "served.zip", COURSE_SIZE - 1)
    result = run(data_dir, server.url, None)
    assert_failed(result, f"sent {COURSE_SIZE - 1} bytes, not the expected {COURSE_SIZE}")
    assert files(data_dir) == []


@pytest.mark.parametrize("checker", ["unzip", "python3"])
def test_fresh_download(tmp_path, server, body, data_dir, checker):
    path = tool_path(tmp_path, BASE_TOOLS + ["curl", checker])
    result = run(data_dir, server.url, len(body), path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == FOUND
    assert (data_dir / "text8.zip").read_bytes() == body
    assert files(data_dir) == ["text8.zip"]
    assert server.ranges == [None]


def test_present_and_valid_makes_no_request(server, body, data_dir):
    (data_dir / "text8.zip").write_bytes(body)
    result = run(data_dir, server.url, len(body))
    assert result.returncode == 0, result.stderr
    assert result.stdout == FOUND + "\n"
    assert server.ranges == []
    assert files(data_dir) == ["text8.zip"]


def test_resumes_a_partial_download(server, body, data_dir):
    half = len(body) // 2
    (data_dir / "text8.zip.part").write_bytes(body[:half])
    result = run(data_dir, server.url, len(body))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == FOUND
    assert server.ranges == [f"bytes={half}-"]
    assert (data_dir / "text8.zip").read_bytes() == body
    assert files(data_dir) == ["text8.zip"]


def test_oversized_partial_is_discarded_and_downloaded_again(server, body, data_dir):
    (data_dir / "text8.zip.part").write_bytes(body + b"extra")
    result = run(data_dir, server.url, len(body))
    assert result.returncode == 0, result.stderr
    assert "starting again" in result.stderr
    assert (data_dir / "text8.zip").read_bytes() == body


@pytest.mark.parametrize("offset", [+1, -1], ids=["served-smaller", "served-larger"])
def test_wrong_size_served(server, body, data_dir, offset):
    result = run(data_dir, server.url, len(body) + offset)
    assert_failed(result, server.url, f"sent {len(body)} bytes", "removed")
    assert files(data_dir) == []


@pytest.mark.parametrize("checker", ["unzip", "python3"])
@pytest.mark.parametrize("damage", ["flipped", "no-text8-member"])
def test_unsound_zip_of_the_right_size(tmp_path, server, body, data_dir, damage, checker):
    if damage == "flipped":
        server.body = flip_middle(body)
    else:
        server.body = make_zip(tmp_path / "other.zip", member="text9")
    path = tool_path(tmp_path, BASE_TOOLS + ["curl", checker])
    result = run(data_dir, server.url, len(server.body), path)
    assert_failed(result, server.url, "not a sound zip", "removed")
    assert files(data_dir) == []


def test_server_down(tmp_path, data_dir):
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/dc/text8.zip"
    result = run(data_dir, url, 1000)
    assert_failed(result, url, "could not download")
    assert files(data_dir) == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_error(server, body, data_dir, status):
    server.status = status
    result = run(data_dir, server.url, len(body))
    assert_failed(result, server.url, "could not download")
    assert files(data_dir) == []


def test_http_error_keeps_the_partial_download(server, body, data_dir):
    half = body[:len(body) // 2]
    (data_dir / "text8.zip.part").write_bytes(half)
    server.status = 404
    result = run(data_dir, server.url, len(body))
    assert_failed(result, server.url, "kept", "rerunning resumes")
    assert files(data_dir) == ["text8.zip.part"]
    assert (data_dir / "text8.zip.part").read_bytes() == half


def test_neither_curl_nor_wget(tmp_path, server, body, data_dir):
    path = tool_path(tmp_path, BASE_TOOLS + ["unzip", "python3"])
    result = run(data_dir, server.url, len(body), path)
    assert_failed(result, "curl", "wget", "install")
    assert len(error_lines(result)) == 1, result.stderr
    assert server.ranges == []
    assert files(data_dir) == []


@pytest.mark.parametrize("content", ["other", "damaged"])
def test_users_wrong_text8_zip_is_left_alone(server, body, data_dir, content):
    users = b"my own notes\n" if content == "other" else flip_middle(body)
    (data_dir / "text8.zip").write_bytes(users)
    result = run(data_dir, server.url, len(body))
    assert_failed(result, "text8.zip", "not the expected", "move it away or delete it")
    assert len(error_lines(result)) == 1, result.stderr
    assert (data_dir / "text8.zip").read_bytes() == users
    assert files(data_dir) == ["text8.zip"]
    assert server.ranges == []


@pytest.fixture
def wget_only(tmp_path):
    if shutil.which("wget") is None:
        pytest.skip("wget is not installed")
    return tool_path(tmp_path, BASE_TOOLS + ["wget", "unzip"])


def test_wget_fresh_download(server, body, data_dir, wget_only):
    result = run(data_dir, server.url, len(body), wget_only)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == FOUND
    assert (data_dir / "text8.zip").read_bytes() == body
    assert files(data_dir) == ["text8.zip"]


def test_wget_resumes_a_partial_download(server, body, data_dir, wget_only):
    half = len(body) // 2
    (data_dir / "text8.zip.part").write_bytes(body[:half])
    result = run(data_dir, server.url, len(body), wget_only)
    assert result.returncode == 0, result.stderr
    assert server.ranges == [f"bytes={half}-"]
    assert (data_dir / "text8.zip").read_bytes() == body
    assert files(data_dir) == ["text8.zip"]


def test_wget_http_error(server, body, data_dir, wget_only):
    server.status = 404
    result = run(data_dir, server.url, len(body), wget_only)
    assert_failed(result, server.url, "could not download")
    assert files(data_dir) == []


def test_directory_does_not_exist(server, body, tmp_path):
    result = run(tmp_path / "missing", server.url, len(body))
    assert_failed(result, "missing", "does not exist", "mkdir -p")
    assert not (tmp_path / "missing").exists()


def test_directory_is_a_file(server, body, tmp_path):
    not_a_directory = tmp_path / "data"
    not_a_directory.write_text("a file\n")
    result = run(not_a_directory, server.url, len(body))
    assert_failed(result, "is not a directory")
    assert not_a_directory.read_text() == "a file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_directory_not_writable(server, body, data_dir):
    data_dir.chmod(0o500)
    try:
        result = run(data_dir, server.url, len(body))
    finally:
        data_dir.chmod(0o700)
    assert_failed(result, "not writable")
    assert files(data_dir) == []


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_interrupt_keeps_the_partial_download(server, body, data_dir, signal_number):
    server.stall_after = len(body) // 2
    env = script_env(data_dir, server.url, len(body))
    process = subprocess.Popen([BASH, SCRIPT, str(data_dir)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = data_dir / "text8.zip.part"
    deadline = time.monotonic() + 10
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert part.stat().st_size > 0
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 128 + signal_number, stderr
    assert stderr.splitlines()[-1].startswith(PREFIX + "interrupted")
    assert "rerunning resumes" in stderr
    assert files(data_dir) == ["text8.zip.part"]
    assert body.startswith(part.read_bytes())

    server.stall_after = None
    server.release.set()
    result = run(data_dir, server.url, len(body))
    assert result.returncode == 0, result.stderr
    assert (data_dir / "text8.zip").read_bytes() == body


def test_help(tmp_path):
    result = subprocess.run([BASH, SCRIPT, "--help"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: bash text8_download.sh [DIR]")
    assert "TEXT8_URL" in result.stdout and "TEXT8_SIZE" in result.stdout
    assert list(tmp_path.iterdir()) == []
