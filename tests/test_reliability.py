"""Reliability: nothing lost, nothing executed, every bad input a clear error.

Each test here proves one promise of docs/RELIABILITY.md through the command line, `lstmlm.cli.main`
in this process or `python -m lstmlm` in a child one: a kill -9 at a random moment loses nothing,
no file can run code when loaded, and every bad input gives a one-line error, a non-zero exit code
and leaves what was there untouched.
"""
from __future__ import annotations

import csv
import functools
import http.server
import io
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import lstmlm
from lstmlm import corpora, mirror
from lstmlm.checkpoint import load_checkpoint
from lstmlm.cli import main
from test_corpora import random_text8, stored_zip

# A tiny model: a run of a few hundred steps takes a few seconds on one thread.
TINY = ["--preset", "quickstart", "--hidden-size", "16", "--embedding-size", "8", "--batch-size", "8",
        "--num-unrollings", "10", "--valid-chars", "200", "--sample-every", "0", "--threads", "1", "--quiet"]
# Columns of metrics.csv that are measurements of time, not of the model.
TIMING_COLUMNS = ("chars_per_second", "elapsed_seconds")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *names: str) -> None:
    """stderr is exactly one line, `lstmlm: error: ...`, naming each of names, without a traceback."""
    assert err.startswith("lstmlm: error: "), err
    assert len(err.rstrip("\n").splitlines()) == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in err, (name, err)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under directory (hidden ones too) and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def assert_same_final_state(a: Path, b: Path) -> None:
    """Two runs' checkpoints hold the same step, parameters, optimizer state and data position."""
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["step"] == second["step"]
    assert first["model"].keys() == second["model"].keys()
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][name]), name
    for key, state in first["optimizer"]["state"].items():
        for name, value in state.items():
            other = second["optimizer"]["state"][key][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (key, name)
    assert torch.equal(first["data"]["cursors"], second["data"]["cursors"])
    assert all(torch.equal(x, y) for x, y in zip(first["state"], second["state"]))
    assert torch.equal(first["rng"]["torch"], second["rng"]["torch"])


@pytest.fixture
def trained_run(tiny_corpus: Path, tmp_path: Path) -> Path:
    """A finished 60-step run with checkpoints at steps 30 and 60."""
    run = tmp_path / "run"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), *TINY, "--steps", "60",
                 "--valid-every", "30", "--checkpoint-every", "30"]) == 0
    return run


# --- crash safety ----------------------------------------------------------------------------------

def test_kill_9_at_a_random_moment_then_resume_equals_an_uninterrupted_run(tiny_corpus, tmp_path):
    """SIGKILL a training run at a random moment after its first checkpoint; --resume finishes it
    with the same metrics.csv rows and the same final parameters as a run never interrupted."""
    steps = 500
    args = [sys.executable, "-m", "lstmlm", "train", "--corpus", str(tiny_corpus), *TINY, "--steps", str(steps),
            "--valid-every", "10", "--checkpoint-every", "10", "--dropout", "0.1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    log = open(tmp_path / "straight.log", "w")
    uninterrupted = subprocess.Popen([*args, "--out", str(straight)], stdout=subprocess.DEVNULL, stderr=log)
    victim = subprocess.Popen([*args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (killed / "checkpoint.pt").exists():
            assert victim.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.005)
        delay = random.uniform(0.0, 1.0)
        time.sleep(delay)
        assert victim.poll() is None, f"the run finished within {delay:.3f} s of its first checkpoint"
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    at_kill = load_checkpoint(killed)["step"]  # the last checkpoint before the kill is whole and loads
    assert 0 < at_kill < steps, f"killed {delay:.3f} s after the first checkpoint, at step {at_kill}"

    resumed = subprocess.run([sys.executable, "-m", "lstmlm", "train", "--resume", str(killed), "--threads", "1",
                              "--quiet"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"trained {steps} steps" in resumed.stdout
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "straight.log").read_text()
    log.close()

    assert metrics_rows(killed) == metrics_rows(straight)
    assert [int(r["step"]) for r in metrics_rows(killed)] == list(range(10, steps + 1, 10))
    assert_same_final_state(killed, straight)
    assert not list(killed.glob(".*tmp*")), "a temporary file was left behind"


_DIE_WHILE_SAVING = """
import os, signal, sys, torch
from lstmlm.checkpoint import load_checkpoint, save_checkpoint

def half_written_then_killed(obj, f, *args, **kwargs):
    f.write(b"PK\\x03\\x04 the first bytes of a checkpoint")
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

payload = load_checkpoint(sys.argv[1])
payload["step"] += 1
torch.save = half_written_then_killed
save_checkpoint(os.path.join(sys.argv[1], "checkpoint.pt"), payload)
"""


def test_kill_9_while_a_checkpoint_is_written_keeps_the_previous_one(trained_run, capsys):
    """A process killed halfway through save_checkpoint leaves a hidden temporary file, never a
    half-written checkpoint.pt; the run resumes from the previous one and the temporary goes."""
    before = (trained_run / "checkpoint.pt").read_bytes()
    child = subprocess.run([sys.executable, "-c", _DIE_WHILE_SAVING, str(trained_run)], capture_output=True,
                           timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    leftovers = list(trained_run.glob(".checkpoint.pt.tmp-*"))
    assert len(leftovers) == 1 and leftovers[0].read_bytes().startswith(b"PK\x03\x04 the first bytes")
    assert (trained_run / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(trained_run)["step"] == 60

    code, out, err = run_cli(["train", "--resume", trained_run, "--steps", "90", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(trained_run)["step"] == 90
    assert not list(trained_run.glob(".checkpoint.pt.tmp-*"))


def test_disk_full_while_saving_a_checkpoint(trained_run, monkeypatch, capsys):
    """ENOSPC in the middle of a checkpoint write: one-line error, the previous checkpoint intact."""
    before = snapshot(trained_run)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    code, out, err = run_cli(["train", "--resume", trained_run, "--steps", "90", "--quiet"], capsys)
    monkeypatch.undo()
    assert code == 1
    assert_one_line_error(err, "No space left on device", trained_run / "checkpoint.pt", "--resume")
    assert (trained_run / "checkpoint.pt").read_bytes() == before["checkpoint.pt"]
    assert load_checkpoint(trained_run)["step"] == 60
    assert not list(trained_run.glob(".checkpoint.pt.tmp-*"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinite_loss_stops_and_keeps_the_last_good_checkpoint(trained_run, monkeypatch, capsys, bad):
    before = (trained_run / "checkpoint.pt").read_bytes()
    import lstmlm.train as train_module
    real = train_module.nats_per_token
    monkeypatch.setattr(train_module, "nats_per_token", lambda logits, targets: real(logits, targets) * bad)
    code, out, err = run_cli(["train", "--resume", trained_run, "--steps", "90", "--quiet"], capsys)
    assert code == 1
    assert_one_line_error(err, f"became {bad}", "step 61", str(trained_run), "--learning-rate")
    assert (trained_run / "checkpoint.pt").read_bytes() == before


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(trained_run, monkeypatch, capsys):
    before = (trained_run / "checkpoint.pt").read_bytes()
    import lstmlm.train as train_module

    def interrupted(logits, targets):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "nats_per_token", interrupted)
    code, out, err = run_cli(["train", "--resume", trained_run, "--steps", "90", "--quiet"], capsys)
    assert code == 130
    assert err.startswith("lstmlm: interrupted") and "--resume" in err and len(err.splitlines()) == 1
    assert (trained_run / "checkpoint.pt").read_bytes() == before


# --- safe loading -----------------------------------------------------------------------------------

class _RunsCode:
    """Unpickling this object would create the file `marker`: the classic __reduce__ payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dumps"])
@pytest.mark.parametrize("command", ["eval", "sample", "resume"])
def test_a_checkpoint_crafted_to_run_code_is_refused(trained_run, tmp_path, capsys, command, writer):
    marker = tmp_path / "pwned"
    if writer == "torch.save":  # a real checkpoint with a __reduce__ payload in place of its vocabulary
        payload = load_checkpoint(trained_run)
        payload["vocab"] = _RunsCode(marker)
        torch.save(payload, trained_run / "checkpoint.pt")
    else:  # a bare pickle
        (trained_run / "checkpoint.pt").write_bytes(pickle.dumps({"format": "lstmlm-checkpoint", "x": _RunsCode(marker)}))
    before = snapshot(trained_run)
    argv = ["train", "--resume", trained_run] if command == "resume" else [command, trained_run]
    code, out, err = run_cli(argv, capsys)
    assert code == 1 and out == ""
    assert_one_line_error(err, "refusing to load", trained_run / "checkpoint.pt", "could run code")
    assert not marker.exists()
    assert snapshot(trained_run) == before


def test_a_bare_pickle_is_refused_in_one_line_by_the_console_script(tmp_path):
    """The same refusal through `python -m lstmlm`: nothing else on stderr (torch's warnings included)."""
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_RunsCode(marker)))
    result = subprocess.run([sys.executable, "-m", "lstmlm", "sample", str(evil)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert_one_line_error(result.stderr, "refusing to load", evil, "could run code")
    assert not marker.exists()


def test_config_json_and_vocabulary_are_never_unpickled(trained_run, tmp_path, capsys):
    """The vocabulary is a list of strings inside the checkpoint; config.json is JSON for people
    and is never read back, so a pickle put in its place is never opened."""
    marker = tmp_path / "pwned"
    (trained_run / "config.json").write_bytes(pickle.dumps(_RunsCode(marker)))
    code, out, err = run_cli(["sample", trained_run, "--length", "5"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["train", "--resume", trained_run, "--steps", "61", "--quiet"], capsys)
    assert code == 0, err
    assert not marker.exists()
    assert all(isinstance(s, str) for s in load_checkpoint(trained_run)["vocab"])


UNSAFE_LOADERS = [r"\bpickle\.loads?\(", r"\bmarshal\.loads?\(", r"\bshelve\.", r"\bdill\.", r"\byaml\.load\(",
                  r"allow_pickle\s*=\s*True", r"weights_only\s*=\s*False", r"(?<![.\w])eval\(", r"(?<![.\w])exec\("]


def test_no_source_file_loads_data_in_a_way_that_can_run_code():
    """Static guard: no unpickling or eval anywhere in lstmlm, and every torch.load has weights_only=True."""
    sources = sorted(Path(lstmlm.__file__).parent.rglob("*.py"))
    assert len(sources) >= 10
    for source in sources:
        text = source.read_text()
        for pattern in UNSAFE_LOADERS:
            assert not re.search(pattern, text), f"{source}: {pattern}"
        for call in re.finditer(r"torch\.load\(", text):
            end = text.index(")", call.end())
            assert "weights_only=True" in text[call.end():end + 1], f"{source}: torch.load without weights_only=True"


# --- missing, truncated, corrupt or incompatible checkpoints ----------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


def _flip_bytes(path: Path) -> None:
    """Corrupt the middle of the file: the zip's CRC check catches it."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _not_lstmlm(path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)


def _incompatible(path: Path) -> None:
    """A checkpoint of another lstmlm version: the same format, parameters renamed."""
    payload = load_checkpoint(path)
    payload["model"] = {f"old.{name}": tensor for name, tensor in payload["model"].items()}
    torch.save(payload, path)


@pytest.mark.parametrize("damage, message", [
    (Path.unlink, "no checkpoint at"),
    (_truncate, "truncated or corrupt"),
    (_garbage, "truncated or corrupt"),
    (_flip_bytes, "is corrupt: its content does not match the SHA-256"),
    (_not_lstmlm, "is not an lstmlm checkpoint"),
    (_incompatible, "does not fit this lstmlm"),
], ids=["missing", "truncated", "garbage", "flipped-bytes", "not-lstmlm", "incompatible"])
@pytest.mark.parametrize("command", ["eval", "sample", "resume"])
def test_missing_truncated_corrupt_or_incompatible_checkpoint(trained_run, capsys, command, damage, message):
    damage(trained_run / "checkpoint.pt")
    before = snapshot(trained_run)
    argv = ["train", "--resume", trained_run] if command == "resume" else [command, trained_run]
    code, out, err = run_cli(argv, capsys)
    assert code == 1 and out == ""
    assert_one_line_error(err, message, trained_run)
    assert snapshot(trained_run) == before


# --- bad corpora ------------------------------------------------------------------------------------

def _empty(tmp: Path) -> Path:
    (tmp / "empty.txt").write_text("")
    return tmp / "empty.txt"


def _short(tmp: Path) -> Path:
    (tmp / "short.txt").write_text("the quick brown fox " * 3)  # 60 characters, a batch is 8 x 11
    return tmp / "short.txt"


def _binary(tmp: Path) -> Path:
    (tmp / "weights.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40)
    return tmp / "weights.bin"


def _latin1(tmp: Path) -> Path:
    (tmp / "latin1.txt").write_bytes("une phrase en français, encodée en latin-1\n".encode("latin-1") * 500)
    return tmp / "latin1.txt"


def _truncated_xz(tmp: Path) -> Path:
    import lzma
    data = lzma.compress(b"the quick brown fox " * 2000)
    (tmp / "cut.txt.xz").write_bytes(data[:len(data) // 2])
    return tmp / "cut.txt.xz"


def _directory_without_text(tmp: Path) -> Path:
    folder = tmp / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01\x02\x03")
    (folder / ".hidden.txt").write_text("hidden files are skipped")
    return folder


def _empty_directory(tmp: Path) -> Path:
    (tmp / "nothing").mkdir()
    return tmp / "nothing"


def _missing(tmp: Path) -> Path:
    return tmp / "no-such-corpus.txt"


@pytest.mark.parametrize("make, message", [
    (_empty, "is empty (0 characters)"),
    (_short, "fewer than batch_size"),
    (_binary, "NUL byte (binary file?)"),
    (_latin1, "is not UTF-8 text: line 1"),
    (_truncated_xz, "is not a valid .xz file"),
    (_directory_without_text, "has no readable UTF-8 text files"),
    (_empty_directory, "has no readable UTF-8 text files"),
    (_missing, "corpus file not found"),
], ids=["empty", "shorter-than-a-batch", "binary", "not-utf8", "truncated-xz", "directory-without-text",
        "empty-directory", "missing"])
def test_bad_corpus_is_a_one_line_error_and_creates_nothing(tmp_path, capsys, make, message):
    corpus = make(tmp_path)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(["train", "--corpus", corpus, "--out", out_dir, *TINY, "--steps", "10"], capsys)
    assert code == 1
    assert_one_line_error(err, message, corpus.name)
    assert not out_dir.exists()


def test_eval_on_a_bad_corpus_changes_nothing(trained_run, tmp_path, capsys):
    before = snapshot(trained_run)
    for make, message in [(_binary, "NUL byte"), (_empty, "is empty"), (_directory_without_text, "no readable")]:
        corpus = make(tmp_path)
        code, out, err = run_cli(["eval", trained_run, "--corpus", corpus], capsys)
        assert code == 1 and out == ""
        assert_one_line_error(err, message, corpus.name)
    assert snapshot(trained_run) == before


# --- out-of-range options ---------------------------------------------------------------------------

TRAIN_OPTIONS = [
    (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (["--num-unrollings", "-3"], "num_unrollings must be a positive integer, got -3"),
    (["--steps", "0"], "steps must be a positive integer, got 0"),
    (["--embedding-size", "0"], "embedding_size must be a positive integer, got 0"),
    (["--num-layers", "0"], "num_layers must be a positive integer, got 0"),
    (["--checkpoint-every", "0"], "checkpoint_every must be a positive integer, got 0"),
    (["--valid-every", "-1"], "valid_every must be a positive integer, got -1"),
    (["--dropout", "1"], "dropout must be in [0, 1)"),
    (["--dropout", "-0.1"], "dropout must be in [0, 1)"),
    (["--learning-rate", "0"], "learning_rate must be > 0"),
    (["--proj-size", "16"], "proj_size must be in [0, hidden_size=16)"),
    (["--clip-grad-norm", "-1"], "clip_grad_norm must be >= 0"),
    (["--threads", "-1"], "--threads must be >= 0"),
]


@pytest.mark.parametrize("flags, message", TRAIN_OPTIONS, ids=["=".join(f)[2:] for f, _ in TRAIN_OPTIONS])
def test_out_of_range_train_option(tiny_corpus, tmp_path, capsys, flags, message):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(["train", "--corpus", tiny_corpus, "--out", out_dir, *TINY, *flags], capsys)
    assert code != 0
    assert_one_line_error(err, message)
    assert not out_dir.exists()


EVAL_AND_SAMPLE_OPTIONS = [
    (["eval", "{run}", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["eval", "{run}", "--num-unrollings", "-1"], "--num-unrollings must be a positive integer, got -1"),
    (["sample", "{run}", "--length", "-1"], "length must be >= 0, got -1"),
    (["sample", "{run}", "--top-k", "-2"], "top_k must be >= 0"),
    (["sample", "{run}", "--temperature", "-0.5"], "temperature must be >= 0"),
    (["sample", "{run}", "--prime", "Zed"], "'Z'"),
    (["sample", "{run}", "--threads", "-2"], "--threads must be >= 0"),
]


@pytest.mark.parametrize("argv, message", EVAL_AND_SAMPLE_OPTIONS,
                         ids=[f"{a[0]}-{'='.join(a[2:])[2:]}" for a, _ in EVAL_AND_SAMPLE_OPTIONS])
def test_out_of_range_eval_and_sample_options_print_nothing(trained_run, capsys, argv, message):
    before = snapshot(trained_run)
    code, out, err = run_cli([a.format(run=trained_run) for a in argv], capsys)
    assert code != 0 and out == ""
    assert_one_line_error(err, message)
    assert snapshot(trained_run) == before


@pytest.mark.parametrize("argv, message", [
    (["train", "--dropout", "lots"], "argument --dropout: invalid float value: 'lots'"),
    (["eval"], "the following arguments are required: RUN_DIR"),
    (["sample", "run", "--lenght", "5"], "unrecognized arguments: --lenght"),
    (["evaluate", "run"], "invalid choice: 'evaluate'"),
    (["mirror", "train", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
], ids=["not-a-number", "missing-argument", "misspelt-flag", "unknown-command", "mirror-not-a-number"])
def test_unparseable_arguments_are_one_line_errors(capsys, argv, message):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, message, "--help")


# --- mirror input ----------------------------------------------------------------------------------

@pytest.fixture
def mirror_run(tmp_path: Path) -> Path:
    """A word-mirroring model trained for 2 steps on the letters a-h: enough to have a vocabulary."""
    corpus = tmp_path / "words.txt"
    corpus.write_text("abc de fgh " * 500)
    model_cfg, train_cfg = mirror.make_mirror_configs({
        "corpus": str(corpus), "embedding_size": 8, "encoder_size": 8, "decoder_size": 8, "attention_size": 8,
        "max_words": 2, "batch_size": 8, "steps": 2, "valid_every": 2, "valid_sentences": 8, "checkpoint_every": 2})
    mirror.start_mirror_training(model_cfg, train_cfg, tmp_path / "mirror", progress=False)
    return tmp_path / "mirror"


@pytest.mark.parametrize("words, stdin", [(["abc", "Zed!"], None), ([], "abc de\nZed!\n")], ids=["argument", "stdin"])
def test_unknown_characters_in_mirror_input(mirror_run, capsys, monkeypatch, words, stdin):
    """Checked before any line is mirrored, so nothing is printed."""
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    before = snapshot(mirror_run)
    code, out, err = run_cli(["mirror", mirror_run, *words], capsys)
    assert code == 1 and out == ""
    assert_one_line_error(err, "characters the model never saw: '!', 'Z'", mirror_run)
    assert snapshot(mirror_run) == before


# --- text8 download: interrupted, then resumed; checksum mismatch -----------------------------------

TEXT8_TEXT = random_text8(20_000)
TEXT8_ZIP = stored_zip(TEXT8_TEXT)
_REAL_DOWNLOAD = corpora.download_text8


class _Server:
    """A loopback server for text8.zip that can drop the connection after cut_at bytes."""

    def __init__(self, body: bytes, cut_at: int | None = None):
        self.body, self.cut_at, self.requests = body, cut_at, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                start = int(self.headers.get("Range", "bytes=0-").removeprefix("bytes=").split("-")[0])
                server.requests.append(self.headers.get("Range"))
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                self.send_header("Content-Length", str(len(server.body) - start))
                self.end_headers()
                stop = len(server.body) if server.cut_at is None else server.cut_at
                self.wfile.write(server.body[start:stop])
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/text8.zip"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _serve_text8(monkeypatch, server: _Server) -> None:
    """`--corpus text8` downloads from server, with the sizes of the small test zip."""
    monkeypatch.setattr(corpora, "download_text8", functools.partial(
        _REAL_DOWNLOAD, url=server.url, expected_zip_bytes=len(TEXT8_ZIP), expected_text_bytes=len(TEXT8_TEXT), progress=False,
        timeout_seconds=10))



def test_interrupted_download_is_kept_and_resumed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LSTMLM_HOME", str(tmp_path / "home"))
    part = tmp_path / "home" / "text8.zip.part"
    argv = ["train", "--corpus", "text8", "--out", tmp_path / "run", *TINY, "--steps", "10"]
    cut = _Server(TEXT8_ZIP, cut_at=len(TEXT8_ZIP) // 3)
    try:
        _serve_text8(monkeypatch, cut)
        code, out, err = run_cli(argv, capsys)
    finally:
        cut.close()
    assert code == 1
    assert_one_line_error(err, "the connection closed after", str(part), "resumed on retry", "--corpus")
    assert part.read_bytes() == TEXT8_ZIP[:len(TEXT8_ZIP) // 3]
    assert not (tmp_path / "run").exists()

    whole = _Server(TEXT8_ZIP)
    try:
        _serve_text8(monkeypatch, whole)
        code, out, err = run_cli(argv, capsys)
    finally:
        whole.close()
    assert code == 0, err
    assert whole.requests == [f"bytes={len(TEXT8_ZIP) // 3}-"]
    assert (tmp_path / "home" / "text8.zip").read_bytes() == TEXT8_ZIP and not part.exists()


def test_download_with_a_checksum_mismatch_is_deleted(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LSTMLM_HOME", str(tmp_path / "home"))
    bad = _Server(stored_zip(TEXT8_TEXT, corrupt=True))
    try:
        _serve_text8(monkeypatch, bad)
        code, out, err = run_cli(["train", "--corpus", "text8", "--out", tmp_path / "run", *TINY, "--steps", "10"],
                                 capsys)
    finally:
        bad.close()
    assert code == 1
    assert_one_line_error(err, "CRC mismatch", "the file was deleted, please retry")
    assert list((tmp_path / "home").iterdir()) == []
    assert not (tmp_path / "run").exists()
