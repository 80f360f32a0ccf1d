import csv

import pytest
import torch

from lstmlm.checkpoint import load_checkpoint
from lstmlm.train import (PRESETS, TrainConfig, learning_rate_at, make_configs, resume_training,
                          start_training)

SMALL = {"hidden_size": 16, "batch_size": 8, "num_unrollings": 10, "valid_every": 25, "valid_chars": 300,
         "sample_every": 50, "sample_count": 1, "sample_length": 10, "checkpoint_every": 100}


def _configs(corpus, steps, **extra):
    return make_configs(None, {"corpus": str(corpus), **SMALL, "steps": steps, **extra})


@pytest.mark.parametrize("extra", [
    {"optimizer": "sgd", "learning_rate": 1.0},
    {"optimizer": "adam", "learning_rate": 3e-3, "dropout": 0.3, "input": "embedding", "embedding_size": 8,
     "peepholes": True, "proj_size": 8, "num_layers": 2},
])
def test_resume_is_exact(tiny_corpus, tmp_path, extra):
    straight = start_training(*_configs(tiny_corpus, 200, **extra), tmp_path / "straight", progress=False)
    start_training(*_configs(tiny_corpus, 100, **extra), tmp_path / "split", progress=False)
    resumed = resume_training(tmp_path / "split", steps=200, progress=False)
    a = load_checkpoint(tmp_path / "straight")
    b = load_checkpoint(tmp_path / "split")
    assert a["step"] == b["step"] == 200
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert resumed["valid_bits_per_char"] == straight["valid_bits_per_char"]
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(25, 201, 25))
    straight_rows = list(csv.DictReader(open(tmp_path / "straight" / "metrics.csv")))
    assert [r["valid_bits_per_char"] for r in rows] == [r["valid_bits_per_char"] for r in straight_rows]


def test_training_learns_and_writes_a_run_directory(tiny_corpus, tmp_path):
    summary = start_training(*_configs(tiny_corpus, 150, learning_rate=1.0), tmp_path / "run", progress=False)
    out = tmp_path / "run"
    for name in ("config.json", "metrics.csv", "samples.txt", "checkpoint.pt", "summary.json", "learning_curve.png"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert float(rows[-1]["valid_bits_per_char"]) < float(rows[0]["valid_bits_per_char"]) - 0.3
    assert summary["valid_bits_per_char"] < 3.0  # 12 symbols: uniform would be 3.58
    payload = load_checkpoint(out)
    assert payload["vocab"] == sorted(set((tiny_corpus).read_text()))
    assert payload["train_config"]["corpus"] == str(tiny_corpus.resolve())


def test_existing_run_is_not_overwritten(tiny_corpus, tmp_path):
    start_training(*_configs(tiny_corpus, 10), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        start_training(*_configs(tiny_corpus, 10), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    model_cfg, train_cfg = _configs(tiny_corpus, 100, checkpoint_every=20)
    start_training(model_cfg, train_cfg, tmp_path / "run", progress=False)
    good = load_checkpoint(tmp_path / "run")
    import lstmlm.train as train_module
    real = train_module.nats_per_token
    monkeypatch.setattr(train_module, "nats_per_token", lambda logits, targets: real(logits, targets) * float("nan"))
    with pytest.raises(FloatingPointError, match="step 101"):
        resume_training(tmp_path / "run", steps=150, progress=False)
    after = load_checkpoint(tmp_path / "run")
    assert after["step"] == good["step"] == 100
    assert all(torch.equal(after["model"][k], v) for k, v in good["model"].items())


def test_learning_rate_staircase():
    cfg = TrainConfig()
    assert [learning_rate_at(cfg, s) for s in (0, 4999, 5000, 7000)] == pytest.approx([10, 10, 1, 1])


def test_assignment_preset_is_the_notebook_recipe():
    model_cfg, train_cfg = make_configs("assignment", {})
    assert (model_cfg.hidden_size, model_cfg.input) == (64, "onehot")
    assert (train_cfg.batch_size, train_cfg.num_unrollings, train_cfg.steps) == (64, 10, 7001)
    assert (train_cfg.optimizer, train_cfg.learning_rate, train_cfg.lr_decay_every) == ("sgd", 10.0, 5000)
    assert train_cfg.clip_grad_norm == 1.25 and train_cfg.split == "assignment"
    model_cfg, train_cfg = make_configs("assignment", {"hidden_size": 128})
    assert model_cfg.hidden_size == 128 and train_cfg.steps == 7001
    assert set(PRESETS) >= {"assignment", "quickstart"}


@pytest.mark.parametrize("overrides, match", [({"steps": 0}, "steps"), ({"optimizer": "lbfgs"}, "optimizer"),
                                              ({"learning_rate": -1.0}, "learning_rate"),
                                              ({"split": "random"}, "split")])
def test_bad_train_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_configs(None, overrides)


@pytest.mark.parametrize("preset", ["text8-cpu", "text8-gpu", "lstmp", "quickstart"])
def test_every_preset_trains_at_a_small_size(preset, tiny_corpus, tmp_path):
    model_cfg, train_cfg = make_configs(preset, {
        "corpus": str(tiny_corpus), "hidden_size": 32, "proj_size": 8 if preset in ("text8-gpu", "lstmp") else None,
        "embedding_size": 8, "batch_size": 4, "num_unrollings": 8, "steps": 6, "valid_every": 3, "valid_chars": 200,
        "valid_batch_size": 4, "checkpoint_every": 3, "sample_every": 0})
    summary = start_training(model_cfg, train_cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 6 and summary["valid_bits_per_char"] < 5


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_keeps_the_cell_state_in_fp32(precision, tiny_corpus, tmp_path):
    model_cfg, train_cfg = _configs(tiny_corpus, 20, precision=precision, optimizer="adam", learning_rate=0.01)
    start_training(model_cfg, train_cfg, tmp_path / "run", progress=False)
    payload = load_checkpoint(tmp_path / "run")
    assert payload["state"][1].dtype == torch.float32  # c
    assert all(t.dtype == torch.float32 for t in payload["model"].values())  # master weights
    assert payload["step"] == 20


def test_max_seconds_stops_early_and_checkpoints(tiny_corpus, tmp_path):
    summary = start_training(*_configs(tiny_corpus, 100_000, max_seconds=1.0), tmp_path / "run", progress=False)
    assert 0 < summary["steps"] < 100_000
    assert load_checkpoint(tmp_path / "run")["step"] == summary["steps"]
