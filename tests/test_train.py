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


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_corpus, tmp_path, monkeypatch, request, cuda_graphs):
    """With --cuda-graphs (run uncaptured on the CPU) the NaN is seen after the update, and the run
    still stops without checkpointing the parameters it reached."""
    if cuda_graphs:
        request.getfixturevalue("graphs_on_cpu")
    model_cfg, train_cfg = _configs(tiny_corpus, 100, checkpoint_every=20, cuda_graphs=cuda_graphs)
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


# --cuda-graphs: StaticStep is the step the CUDA graph captures. On the CPU it runs uncaptured, so
# everything but the capture and the replay is tested here; the tests marked cuda need a GPU.
GRAPH_CASES = [
    {"optimizer": "sgd", "learning_rate": 1.0, "weight_decay": 1e-4},
    {"optimizer": "adam", "learning_rate": 3e-3, "dropout": 0.3, "input": "embedding", "embedding_size": 8,
     "peepholes": True, "proj_size": 8, "num_layers": 2},
]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _twin_runs(corpus, extra, device="cpu", **cfg):
    """Two runs with the same seed: one driven by _train_step, one by a StaticStep."""
    from dataclasses import replace

    from lstmlm.data import load_ids
    from lstmlm.distributed import World
    from lstmlm.train import Run

    model_cfg, train_cfg = _configs(corpus, 100, lr_decay_every=3, lr_decay=0.5, **extra, **cfg)
    vocab, ids = load_ids(train_cfg.corpus, train_cfg.alphabet)
    normal = Run(model_cfg, train_cfg, vocab, ids, World(device=device))
    graphed = Run(model_cfg, replace(train_cfg, cuda_graphs=True), vocab, ids, World(device=device))
    return normal, graphed


def _assert_same_run(a, b, exact=True):
    check = torch.equal if exact else (lambda x, y: torch.allclose(x, y, rtol=1e-5, atol=1e-6))
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert check(x, y), name
    assert all(check(x, y) for x, y in zip(a.state, b.state))
    assert a.step == b.step
    assert torch.equal(a.stream.cursors, b.stream.cursors)


@pytest.mark.parametrize("extra", GRAPH_CASES)
@pytest.mark.parametrize("graph_optimizer", [False, True])
def test_static_step_equals_the_normal_step(tiny_corpus, extra, graph_optimizer):
    """Bit for bit on the CPU, with the learning rate decaying in its tensor. With graph_optimizer the
    normal step uses the same fused optimizer; without, torch's default one (the same bits for SGD;
    for Adam the fused update rounds differently, so only close)."""
    from lstmlm.train import StaticStep, _train_step, learning_rate_at

    normal, graphed = _twin_runs(tiny_corpus, extra, cuda_graphs=graph_optimizer)
    step = StaticStep(graphed)
    for i in range(8):
        torch.manual_seed(i)  # the same dropout masks
        expected = _train_step(normal, learning_rate_at(normal.cfg, i))
        torch.manual_seed(i)
        assert step(learning_rate_at(normal.cfg, i)) == expected
    assert graphed.state is step.state and graphed.step == 8
    _assert_same_run(normal, graphed, exact=graph_optimizer or extra["optimizer"] == "sgd")
    saved = graphed.checkpoint_payload()["optimizer"]["param_groups"][0]["lr"]
    assert isinstance(saved, float) and saved == learning_rate_at(normal.cfg, 7)


@pytest.fixture
def graphs_on_cpu(monkeypatch):
    """Let --cuda-graphs runs train on the CPU (also where there is a GPU), uncaptured: the loop,
    checkpoints and resume of a graph run, tested without a GPU."""
    import lstmlm.train as train_module
    from lstmlm.distributed import World

    monkeypatch.setattr(train_module, "init_world", lambda: World(device="cpu"))
    monkeypatch.setattr(train_module, "check_cuda_graphs", lambda cfg, world: None)


@pytest.mark.parametrize("extra", GRAPH_CASES)
def test_cuda_graph_run_resumes_exactly(tiny_corpus, tmp_path, graphs_on_cpu, extra):
    straight = start_training(*_configs(tiny_corpus, 60, valid_every=20, cuda_graphs=True, **extra),
                              tmp_path / "straight", progress=False)
    start_training(*_configs(tiny_corpus, 30, valid_every=20, cuda_graphs=True, **extra), tmp_path / "split",
                   progress=False)
    resumed = resume_training(tmp_path / "split", steps=60, progress=False)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a["step"] == b["step"] == 60 and a["train_config"]["cuda_graphs"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert all(torch.equal(x, y) for x, y in zip(a["state"], b["state"]))
    assert resumed["valid_bits_per_char"] == straight["valid_bits_per_char"]
    if extra["optimizer"] == "sgd":  # and the same as a run without --cuda-graphs
        start_training(*_configs(tiny_corpus, 60, valid_every=20, **extra), tmp_path / "plain", progress=False)
        plain = load_checkpoint(tmp_path / "plain")
        assert all(torch.equal(t, plain["model"][k]) for k, t in a["model"].items())


def test_cuda_graphs_is_refused_where_it_cannot_work(tiny_corpus, tmp_path, capsys):
    from lstmlm.distributed import World
    from lstmlm.train import check_cuda_graphs

    _, train_cfg = _configs(tiny_corpus, 10, cuda_graphs=True)
    with pytest.raises(ValueError, match="--cuda-graphs .* device is cpu"):
        check_cuda_graphs(train_cfg, World(device="cpu"))
    with pytest.raises(ValueError, match="--cuda-graphs runs in one process"):
        check_cuda_graphs(train_cfg, World(rank=0, size=2, device="cuda:0"))
    with pytest.raises(ValueError, match="--cuda-graphs does not work with --precision fp16"):
        _configs(tiny_corpus, 10, cuda_graphs=True, precision="fp16")
    check_cuda_graphs(_configs(tiny_corpus, 10)[1], World(device="cpu"))  # off: nothing to check
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--cuda-graphs"):
            start_training(*_configs(tiny_corpus, 10, cuda_graphs=True), tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()
        from lstmlm.cli import main

        assert main(["train", "--corpus", str(tiny_corpus), "--cuda-graphs", "--out", str(tmp_path / "cli"),
                     "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lstmlm: error: --cuda-graphs captures the training step")
        assert not (tmp_path / "cli").exists()


@cuda
@pytest.mark.parametrize("extra", GRAPH_CASES)
def test_cuda_graph_replay_equals_the_eager_static_step_on_the_gpu(tiny_corpus, extra):
    """On a GPU: the captured graph, replayed with new batches and a decaying learning rate, computes
    what the same step run eagerly computes."""
    from lstmlm.train import StaticStep, learning_rate_at

    _, eager_run = _twin_runs(tiny_corpus, {**extra, "dropout": 0.0}, device="cuda")
    _, graph_run = _twin_runs(tiny_corpus, {**extra, "dropout": 0.0}, device="cuda")
    eager, graphed = StaticStep(eager_run, capture=False), StaticStep(graph_run, capture=True)
    for i in range(12):
        lr = learning_rate_at(eager_run.cfg, i)
        assert graphed(lr) == pytest.approx(eager(lr), rel=1e-5)
    assert graphed.graph is not None and graphed.eager_steps == StaticStep.WARMUP_STEPS
    _assert_same_run(eager_run, graph_run, exact=False)


@cuda
def test_cuda_graph_training_resumes_on_the_gpu(tiny_corpus, tmp_path):
    """On a GPU, through the training loop: a run that stops and resumes (3 eager steps and a new
    capture after the checkpoint) ends where an uninterrupted one ends (no dropout: the CUDA RNG
    state is not checkpointed)."""
    extra = {**GRAPH_CASES[1], "dropout": 0.0}
    start_training(*_configs(tiny_corpus, 40, valid_every=20, cuda_graphs=True, **extra), tmp_path / "straight",
                   progress=False)
    start_training(*_configs(tiny_corpus, 20, valid_every=20, cuda_graphs=True, **extra), tmp_path / "split",
                   progress=False)
    resume_training(tmp_path / "split", steps=40, progress=False)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a["step"] == b["step"] == 40
    for name, tensor in a["model"].items():
        torch.testing.assert_close(tensor, b["model"][name], rtol=1e-4, atol=1e-6, msg=name)
