"""lstmlm bench: the table, the ratios and the files, on a tiny size."""
import json

import pytest
import torch

from lstmlm import bench, kernels
from lstmlm.cli import main

TINY = bench.BenchSize(8, 4, 3, embedding_size=0, proj_size=2)
CPU_IMPLEMENTATIONS = ("nn.LSTM", "reference", "cpu", "nn.LSTM+proj", "reference+lstmp", "cpu+lstmp")


def test_run_benchmark_measures_every_implementation_against_nn_lstm(tmp_path):
    results = bench.run_benchmark([TINY], vocab_size=7, min_seconds=0.05, rounds=1)
    assert [r["implementation"] for r in results] == list(CPU_IMPLEMENTATIONS)
    by_name = {r["implementation"]: r for r in results}
    assert by_name["nn.LSTM"]["ratio_to_nn_lstm"] == pytest.approx(1.0)
    assert by_name["cpu+lstmp"]["baseline"] == "nn.LSTM+proj" and by_name["cpu+lstmp"]["peepholes"]
    assert all(r["chars_per_second"] > 0 and r["saved_bytes"] > 0 for r in results)
    assert all(r["error"] is None and r["peak_bytes"] is None and not r["cuda_graph"] for r in results)
    env = bench.environment()
    table = bench.format_table(results, env)
    assert f"torch {env['torch']}" in table and "threads" in table and "| cpu+lstmp |" in table
    assert "precision" not in table.splitlines()[0] and "peak" not in table  # the CPU table as before
    json_path, csv_path = bench.write_results(results, env, tmp_path)
    assert json.loads(json_path.read_text())["environment"]["dtype"] == "float32"
    assert len(csv_path.read_text().splitlines()) == 2 + len(results)


def test_implementations_follow_the_kernels_of_lstmlm_kernels(monkeypatch):
    assert bench.default_implementations("cpu") == CPU_IMPLEMENTATIONS
    monkeypatch.setattr(kernels, "KERNELS", (*kernels.KERNELS, "newkernel"))
    gpu = bench.default_implementations("cuda")
    assert gpu[:2] == ("nn.LSTM", "reference") and "cpu" not in gpu and "cpu+lstmp" not in gpu
    assert "newkernel" in gpu and "newkernel+lstmp" in gpu and "nn.LSTM+proj" in gpu
    assert all(k in gpu for k in kernels.KERNELS if k not in ("auto", "reference", "cpu", *bench.EXPERIMENTAL))
    assert "cooperative" not in gpu and "cooperative+lstmp" in bench.all_implementations()  # timed when named
    assert "auto+lstmp" in bench.all_implementations() and "newkernel" in bench.all_implementations()
    assert bench.default_implementations("cpu") == CPU_IMPLEMENTATIONS  # GPU kernels stay off the CPU table
    assert bench.default_sizes("cpu") == bench.DEFAULT_SIZES
    assert {(s.hidden_size, s.batch_size) for s in bench.default_sizes("cuda")} == {
        (h, b) for h in (64, 256, 1024, 2048) for b in (16, 64, 256, 1024)}


def test_bf16_autocast_runs_and_bad_options_are_refused():
    # (torch 2.13's oneDNN nn.LSTM fails under CPU bf16 autocast: that would be an error row)
    results = bench.run_benchmark([TINY], ("reference", "reference+lstmp"), vocab_size=7, min_seconds=0.02, rounds=1,
                                  precision="bf16")
    assert all(r["chars_per_second"] > 0 for r in results)
    assert not torch.is_autocast_enabled("cpu")
    for kwargs, match in [({"precision": "tf32"}, "tf32 changes CUDA matmuls only"),
                          ({"precision": "fp8"}, "precision must be one of"),
                          ({"cuda_graphs": True}, "CUDA graphs need a CUDA device")]:
        with pytest.raises(ValueError, match=match):
            bench.run_benchmark([TINY], ("nn.LSTM",), **kwargs)


def test_a_failing_implementation_is_a_row_not_a_crash(monkeypatch, tmp_path, capsys):
    real = bench.make_model

    def make_model(name, *args):
        if name == "reference":
            raise RuntimeError("out of memory")
        return real(name, *args)

    monkeypatch.setattr(bench, "make_model", make_model)
    results = bench.run_benchmark([TINY], ("nn.LSTM", "reference"), vocab_size=7, min_seconds=0.02, rounds=1)
    failed = results[1]
    assert failed["error"] == "RuntimeError: out of memory" and failed["chars_per_second"] is None
    assert failed["ratio_to_nn_lstm"] is None and results[0]["chars_per_second"] > 0
    assert "failed: RuntimeError: out of memory" in bench.format_row(failed)
    assert main(["bench", "--sizes", "8,4,3", "--kernel", "nn.LSTM", "reference", "--seconds", "0.02", "--rounds", "1",
                 "--out", str(tmp_path), "--quiet"]) == 1
    assert "1 of 2 measurements failed" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "bench.json").read_text())["results"]) == 2  # what was measured is kept


def test_cuda_table_has_peak_memory_columns():
    env = {**bench.environment(), "device": "cuda", "device_name": "H100", "precision": "tf32", "cuda_graphs": True,
           "cuda": "13.0", "cudnn": 91000, "triton": "3.6.0"}
    row = {"implementation": "triton+lstmp", "size": "H64 B16 T50 emb128 P16", "chars_per_second": 1e6,
           "ratio_to_nn_lstm": 2.0, "saved_bytes": 2**20, "memory_ratio_to_nn_lstm": 0.5, "peak_bytes": 3 * 2**20,
           "peak_ratio_to_nn_lstm": 0.75, "error": None, "note": ""}
    lines = bench.format_table([row], env).splitlines()
    assert "precision tf32, CUDA graphs on" in lines[0] and "Triton 3.6.0" in lines[0]
    assert "peak fwd+bwd (MiB)" in lines[2] and lines[2].count("|") == lines[4].count("|") == 9
    assert lines[4] == "| H64 B16 T50 emb128 P16 | triton+lstmp | 1,000,000 | 2.00x | 1.0 | 0.50x | 3.0 | 0.75x |"


def test_parse_size_says_what_is_wrong():
    assert bench.parse_size("1024,128,100,128,256") == bench.BenchSize(1024, 128, 100, 128, 256)
    with pytest.raises(ValueError, match="H,B,T"):
        bench.parse_size("64,0,10")


def test_bench_command_prints_the_table_and_writes_files(tmp_path, capsys):
    assert main(["bench", "--sizes", "8,4,3", "--kernel", "nn.LSTM", "cpu", "--seconds", "0.05", "--rounds", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "device: cpu" in out and "| cpu |" in out and (tmp_path / "bench.csv").exists()
    assert main(["bench", "--kernel", "fast", "--quiet"]) == 1
    assert main(["bench", "--precision", "tf32", "--quiet"]) == 1
    assert main(["bench", "--cuda-graphs", "--quiet"]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_cuda_bench_captures_every_implementation_on_the_gpu(precision):
    size = bench.BenchSize(32, 16, 10, embedding_size=16)
    results = bench.run_benchmark([size], vocab_size=11, min_seconds=0.05, rounds=1, device="cuda", precision=precision)
    assert [r["implementation"] for r in results] == list(bench.default_implementations("cuda"))
    for r in results:
        assert r["error"] is None and r["cuda_graph"], (r["implementation"], r["error"], r["note"])
        assert r["chars_per_second"] > 0 and r["peak_bytes"] > 0


def test_default_sweep_times_the_persistent_kernel_only_where_its_weights_fit():
    from lstmlm.bench import BenchSize, applies

    assert applies("persistent", BenchSize(64, 16, 50, 128)) and applies("persistent+lstmp", BenchSize(128, 16, 50, 128))
    assert not applies("persistent", BenchSize(256, 16, 50, 128))
    assert not applies("persistent+lstmp", BenchSize(2048, 1024, 50, 128))
    assert applies("triton", BenchSize(2048, 1024, 50, 128)) and applies("nn.LSTM", BenchSize(2048, 16, 50))
    assert applies("cooperative+lstmp", BenchSize(2048, 64, 50)) and not applies("cooperative", BenchSize(64, 65, 50))
