"""The command line end to end on a tiny corpus."""
import json
import subprocess
import sys

import pytest

from lstmlm.cli import main

TINY = ["--preset", "quickstart", "--learning-rate", "0.01", "--hidden-size", "32", "--batch-size", "8", "--num-unrollings", "10", "--steps", "60",
        "--valid-every", "30", "--sample-every", "0", "--checkpoint-every", "30", "--quiet"]


@pytest.fixture
def trained_run(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), *TINY]) == 0
    return run


def test_train_prints_validation_and_a_sample(tiny_corpus, tmp_path, capsys):
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "r"), *TINY]) == 0
    out = capsys.readouterr().out
    assert "bits per character" in out and "sample: " in out


def test_eval_prints_one_json_line(trained_run, tiny_corpus, capsys):
    n = len(tiny_corpus.read_text())
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--split", "valid"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert 0 < result["bits_per_char"] < 3.0 and result["chars"] == n * 95 // 100 - n * 90 // 100 - 2
    assert result["perplexity"] == pytest.approx(2 ** result["bits_per_char"])
    assert main(["eval", str(trained_run), "--split", "all"]) == 0
    assert json.loads(capsys.readouterr().out)["chars"] == n - 2


def test_sample_is_reproducible(trained_run, capsys):
    capsys.readouterr()
    runs = []
    for seed in (5, 5, 6):
        assert main(["sample", str(trained_run), "--prime", "the ", "--length", "40", "--seed", str(seed),
                     "--temperature", "0.8", "--top-k", "5"]) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] != runs[2]
    assert runs[0].startswith("the ") and len(runs[0].rstrip("\n")) == 44


def test_resume_extends_a_run(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--steps", "90", "--quiet"]) == 0
    assert "trained 90 steps" in capsys.readouterr().out
    assert main(["train", "--resume", str(trained_run), "--hidden-size", "64"]) == 1
    assert "--hidden-size" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["sample", "{run}", "--prime", "thé Z"], "'Z', 'é'"),
    (["sample", "{run}", "--temperature", "-1"], "temperature"),
    (["eval", "{run}", "--corpus", "{other}"], "outside the vocabulary"),
    (["eval", "{tmp}/nothing"], "no checkpoint"),
    (["train", "--corpus", "{corpus}", "--dropout", "1.5", "--out", "{tmp}/x"], "dropout must be in [0, 1)"),
    (["train", "--corpus", "{corpus}", "--hidden-size", "0", "--out", "{tmp}/x"], "hidden_size"),
    (["train", "--corpus", "{corpus}", "--batch-size", "5000", "--out", "{tmp}/x"], "fewer than batch_size"),
    (["train", "--corpus", "{corpus}", "--out", "{run}"], "already holds a run"),
])
def test_bad_input_is_a_one_line_error(argv, message, trained_run, tiny_corpus, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("THE QUICK BROWN FOX")
    argv = [a.format(run=trained_run, other=other, tmp=tmp_path, corpus=tiny_corpus) for a in argv]
    capsys.readouterr()
    assert main(argv + ["--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lstmlm: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_entry_point_runs(trained_run):
    result = subprocess.run([sys.executable, "-m", "lstmlm", "sample", str(trained_run), "--length", "20",
                             "--seed", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.rstrip("\n")) == 20
