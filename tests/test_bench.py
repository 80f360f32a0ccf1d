"""lstmlm bench: the table, the ratios and the files, on a tiny size."""
import json

import pytest

from lstmlm import bench
from lstmlm.cli import main

TINY = bench.BenchSize(8, 4, 3, embedding_size=0, proj_size=2)


def test_run_benchmark_measures_every_implementation_against_nn_lstm(tmp_path):
    results = bench.run_benchmark([TINY], bench.IMPLEMENTATIONS, vocab_size=7, min_seconds=0.05, rounds=1)
    assert [r["implementation"] for r in results] == list(bench.IMPLEMENTATIONS)
    by_name = {r["implementation"]: r for r in results}
    assert by_name["nn.LSTM"]["ratio_to_nn_lstm"] == pytest.approx(1.0)
    assert by_name["cpu+lstmp"]["baseline"] == "nn.LSTM+proj" and by_name["cpu+lstmp"]["peepholes"]
    assert all(r["chars_per_second"] > 0 and r["saved_bytes"] > 0 for r in results)
    env = bench.environment()
    table = bench.format_table(results, env)
    assert f"torch {env['torch']}" in table and "threads" in table and "| cpu+lstmp |" in table
    json_path, csv_path = bench.write_results(results, env, tmp_path)
    assert json.loads(json_path.read_text())["environment"]["dtype"] == "float32"
    assert len(csv_path.read_text().splitlines()) == 2 + len(results)


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
