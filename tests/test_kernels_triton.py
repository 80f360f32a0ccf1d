"""The Triton LSTMP kernels (lstmlm.kernels.gpu) against their plain-PyTorch twin, forward and backward.

On a machine with CUDA they run on the GPU; elsewhere on the CPU in Triton's interpreter
(TRITON_INTERPRET=1, set by conftest.py before any kernel is defined), which is how CI runs them.
Gradients are compared with the reference computed in float64.
"""
import pytest
import torch

triton = pytest.importorskip("triton")

from lstmlm.kernels import KERNELS, fast_path, gpu  # noqa: E402
from lstmlm.nn import LSTM, lstmp_layer_reference  # noqa: E402

from test_kernels import _layer_args, _leaves, _run, _saved_bytes, check_module_equals_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(DEVICE == "cpu" and not gpu.interpreting(),
                                reason="no CUDA, and TRITON_INTERPRET was not set before the kernels were defined")
LAYERS = {"triton": gpu.lstmp_layer_triton, "persistent": gpu.lstmp_layer_persistent,
          "cooperative": gpu.lstmp_layer_cooperative}

# (T, B, I, H, P): one step and one stream; odd sizes; several programs over streams (B > 16 for the
# persistent kernel, B > 64 for the per-step one); a long sequence, so the kernels' pointers walk far
SIZES = [(1, 1, 1, 1, 0), (7, 3, 5, 9, 0), (7, 3, 5, 9, 4), (5, 20, 6, 24, 12), (3, 70, 4, 40, 0),
         (3, 33, 8, 64, 16), (60, 2, 3, 8, 0)]
# beyond the persistent kernel's on-chip weights: several programs over cells (H > 64), a wide projection
STEP_SIZES = [(3, 70, 4, 70, 0), (3, 66, 8, 72, 40)]
# the cooperative kernel's batches (<= 64): several slices of cells and of outputs (16 each)
COOPERATIVE_SIZES = [s for s in SIZES if s[1] <= gpu.COOPERATIVE_MAX_BATCH] + [(4, 20, 6, 72, 40), (3, 64, 5, 48, 0)]


def _on_device(args):
    def move(t):
        return None if t is None else t.detach().to(DEVICE).requires_grad_()

    return [tuple(move(t) for t in a) if isinstance(a, tuple) else move(a) for a in args]


def _float64(args):
    return [tuple(t.double() for t in a) if isinstance(a, tuple) else None if a is None else a.double() for a in args]


@pytest.mark.parametrize("kernel,size", [(k, s) for k in ("triton", "persistent") for s in SIZES]
                         + [("triton", s) for s in STEP_SIZES] + [("cooperative", s) for s in COOPERATIVE_SIZES])
@pytest.mark.parametrize("peepholes", [False, True])
def test_triton_kernel_equals_reference_forward_and_backward(kernel, size, peepholes):
    generator = torch.Generator().manual_seed(hash((kernel, size, peepholes)) % 2**31)
    args = _layer_args(*size, peepholes, torch.float32, generator, bias=size[0] != 3)  # T=3 sizes: no bias
    (exact_out, exact_grads) = _run(lstmp_layer_reference, _float64(args), 1)
    (ref_out, ref_grads) = _run(lstmp_layer_reference, args, 1)
    (fast_out, fast_grads) = _run(LAYERS[kernel], _on_device(args), 1)
    for fast, ref, exact in zip(fast_out, ref_out, exact_out):
        assert fast.dtype == torch.float32 and fast.device.type == DEVICE
        torch.testing.assert_close(fast.cpu(), ref, rtol=1e-5, atol=1e-5)
    assert len(fast_grads) == len(exact_grads) == len(list(_leaves(args)))
    for fast, ref, exact in zip(fast_grads, ref_grads, exact_grads):
        # as close to the float64 gradient as the float32 reference is, up to rounding
        ref_error = (ref - exact.float()).abs().max().item()
        assert ref_error <= 1e-4 * max(1.0, exact.abs().max().item())
        assert (fast.cpu() - exact.float()).abs().max().item() <= 4 * ref_error + 1e-5


@pytest.mark.parametrize("kernel", ["triton", "persistent", "cooperative"])
def test_triton_kernel_under_bf16_autocast_matches_the_reference_to_bf16_rounding(kernel):
    """bf16 operands in the recurrent products, the cell state fp32: as close as the reference's
    own bf16 autocast."""
    generator = torch.Generator().manual_seed(11)
    args = _layer_args(6, 20, 8, 24, 12, True, torch.float32, generator)
    exact_out, exact_grads = _run(lstmp_layer_reference, _float64(args), 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_out, ref_grads = _run(lstmp_layer_reference, args, 1)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        fast_out, fast_grads = _run(LAYERS[kernel], _on_device(args), 1)
    assert fast_out[2].dtype == torch.float32  # c_n
    for fast, ref, exact in zip([*fast_out, *fast_grads], [*ref_out, *ref_grads], [*exact_out, *exact_grads]):
        ref_error = (ref.float() - exact.float()).abs().max().item()
        fast_error = (fast.float().cpu() - exact.float()).abs().max().item()
        assert 0 < fast_error <= 2 * ref_error + 1e-3  # bf16 products did run, no worse than the reference's


def test_triton_kernel_without_state_gradients_and_without_grad():
    generator = torch.Generator().manual_seed(5)
    args = _on_device(_layer_args(5, 4, 3, 6, 2, True, torch.float32, generator))
    for layer in LAYERS.values():
        x = args[0].detach().clone().requires_grad_()
        layer(x, *args[1:])[0].square().sum().backward()
        x_ref = args[0].detach().clone().requires_grad_()
        lstmp_layer_reference(x_ref, *args[1:])[0].square().sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(layer(*args), lstmp_layer_reference(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", ["triton", "persistent", "cooperative"])
@pytest.mark.parametrize("proj_size,peepholes,bidirectional,batch_first",
                         [(0, False, False, False), (3, True, True, True)])
def test_lstm_module_triton_kernel_equals_reference(kernel, proj_size, peepholes, bidirectional, batch_first):
    check_module_equals_reference(kernel, DEVICE, proj_size, peepholes, bidirectional, batch_first)


def test_triton_kernel_saves_no_more_for_backward_than_the_reference():
    generator = torch.Generator().manual_seed(6)
    args = _on_device(_layer_args(20, 8, 5, 32, 8, True, torch.float32, generator))
    reference = _saved_bytes(lstmp_layer_reference, args)
    for layer in LAYERS.values():
        assert _saved_bytes(layer, args) <= reference


def test_kernel_choice_and_errors(monkeypatch):
    assert {"triton", "persistent", "cooperative"} <= set(KERNELS)
    x = torch.zeros(2, 1, 3, device=DEVICE)
    assert fast_path("triton", x) is gpu.lstmp_layer_triton
    assert fast_path("persistent", x) is gpu.lstmp_layer_persistent
    # the persistent kernel keeps W_hh and W_hr on chip: small layers only, with a clear error beyond
    assert gpu.persistent_fits(64, 64, False) and gpu.persistent_fits(128, 32, True)
    assert not gpu.persistent_fits(128, 128, False) and not gpu.persistent_fits(1024, 256, True)
    with pytest.raises(ValueError, match="kernel 'persistent'.*hidden_size=256.*kernel='triton'"):
        LSTM(3, 256, kernel="persistent", device=DEVICE)(torch.zeros(2, 1, 3, device=DEVICE))
    with pytest.raises(ValueError, match="kernel 'cooperative' runs batches of up to 64 streams, got 65"):
        LSTM(3, 8, kernel="cooperative", device=DEVICE)(torch.zeros(2, 65, 3, device=DEVICE))
    assert fast_path("auto", x, 64, 16, True) is not gpu.lstmp_layer_cooperative  # experimental: never auto
    with pytest.raises(ValueError, match="kernel 'triton' cannot run here: .*float64"):
        fast_path("triton", torch.zeros(2, 1, 3, dtype=torch.float64, device=DEVICE))
    monkeypatch.setattr(gpu, "interpreting", lambda: False)
    with pytest.raises(ValueError, match="kernel 'triton' cannot run here: .*CUDA tensors.*TRITON_INTERPRET=1"):
        fast_path("triton", torch.zeros(2, 1, 3))
    assert fast_path("auto", torch.zeros(2, 1, 3), 8, 8, False) is not gpu.lstmp_layer_triton  # CPU: never Triton


@pytest.mark.skipif(DEVICE != "cuda", reason="auto picks a Triton kernel on CUDA only")
def test_auto_on_cuda_picks_persistent_for_small_layers_and_per_step_for_large():
    x = torch.zeros(2, 1, 3, device="cuda")
    assert fast_path("auto", x, 64, 64, False) is gpu.lstmp_layer_persistent
    assert fast_path("auto", x, 1024, 256, True) is gpu.lstmp_layer_triton


H100_SHARED_MEMORY_PER_BLOCK = 232_448  # bytes, sm_90 (cudaDevAttrMaxSharedMemoryPerBlockOptin)


@pytest.mark.skipif(DEVICE == "cuda", reason="on a GPU the tests above compile and run every kernel")
def test_kernels_compile_for_an_h100_and_fit_its_shared_memory():
    """Compile every kernel as gpu.py launches it for sm_90 with Triton's bundled ptxas, no GPU needed:
    catches what the CPU interpreter cannot (Triton's compiler rules), and checks each launch that
    `auto` makes fits an H100 block's shared memory."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": str(root / "src")}
    rows = []
    for flags in (["--sizes", "32,0", "64,16", "--dot", "ieee", "tf32", "bf16", "--step-tiles", "32", "16"],
                  ["--sizes", "32,0", "--dot", "ieee", "--step-tiles", "16", "--no-peepholes"]):
        result = subprocess.run([sys.executable, str(root / "benchmarks" / "triton_ptxas.py"), *flags],
                                capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        rows += [line.split("|")[1:-1] for line in result.stdout.splitlines()
                 if line.startswith(("| persistent", "| step", "| cooperative"))]
    # persistent fwd/bwd x 2 sizes x 3 dots, 3 step kernels x 2 tiles x 3 dots, cooperative fwd/bwd x 2
    # batches x 3 dots; without peepholes 2 + 3 + 2 x 2
    assert len(rows) == 2 * 2 * 3 + 3 * 2 * 3 + 2 * 2 * 3 + 2 + 3 + 2 * 2
    for row in rows:
        shared = int(row[7].strip().replace(",", ""))
        assert shared <= H100_SHARED_MEMORY_PER_BLOCK, row


def test_training_on_the_triton_kernels_follows_the_reference(tiny_corpus, tmp_path, monkeypatch):
    """`lstmlm train --kernel triton|persistent`: a 2-layer LSTMP language model with peepholes trains
    5 Adam steps to the same parameters as on the reference recurrence, to float32 rounding."""
    import lstmlm.train
    from lstmlm.checkpoint import load_checkpoint
    from lstmlm.train import make_configs, start_training

    # the closing 200-character sample would be 400 interpreted launches; it is not what is tested here
    monkeypatch.setattr(lstmlm.train, "sample_text", lambda *args, **kwargs: "")

    corpus = tmp_path / "short.txt"  # 6,000 characters: a short final validation in the interpreter
    corpus.write_text(tiny_corpus.read_text()[:6000])
    final = {}
    for kernel in ("reference", "triton", "persistent"):
        model_cfg, train_cfg = make_configs(None, {
            "corpus": str(corpus), "hidden_size": 16, "proj_size": 8, "peepholes": True, "num_layers": 2,
            "batch_size": 4, "num_unrollings": 6, "steps": 5, "optimizer": "adam", "learning_rate": 0.01,
            "valid_every": 5, "valid_chars": 50, "sample_every": 0, "checkpoint_every": 5, "kernel": kernel})
        start_training(model_cfg, train_cfg, tmp_path / kernel, progress=False)
        final[kernel] = load_checkpoint(tmp_path / kernel)["model"]
    for kernel in ("triton", "persistent"):
        for name, value in final["reference"].items():
            torch.testing.assert_close(final[kernel][name], value, rtol=1e-4, atol=1e-5, msg=f"{kernel} {name}")


def test_cli_names_a_kernel_that_cannot_run_here_before_writing_anything(tiny_corpus, tmp_path):
    """Without a GPU and outside the interpreter, --kernel triton is refused in one line, no run directory."""
    import os
    import subprocess
    import sys

    if DEVICE == "cuda":
        pytest.skip("with a GPU the Triton kernel runs")
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    result = subprocess.run([sys.executable, "-m", "lstmlm", "train", "--corpus", str(tiny_corpus), "--kernel", "triton",
                             "--steps", "1", "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("lstmlm: error: kernel 'triton' cannot run here")
    assert not (tmp_path / "run").exists()
