"""Every fast LSTMP path against its plain-PyTorch twin, forward and backward, on fresh random inputs."""
import pytest
import torch

from lstmlm.kernels import KERNELS, cpu, fast_path
from lstmlm.nn import LSTM, lstmp_layer_reference

pytestmark = pytest.mark.skipif(not cpu.available(), reason=f"CPU kernel not buildable: {cpu._state.get('error')}")

# (T, B, I, H, P): odd sizes, a single step, a single stream, one unit
SIZES = [(1, 1, 1, 1, 0), (7, 3, 5, 9, 0), (7, 3, 5, 9, 4), (13, 5, 11, 17, 6), (4, 33, 8, 64, 16)]


def _layer_args(T, B, I, H, P, peepholes, dtype, generator, bias=True):
    """Random arguments of lstmp_layer_reference, all leaves requiring grad."""
    R = P or H

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator, dtype=dtype) * scale).requires_grad_()

    return [rand(T, B, I), rand(B, R), rand(B, H), rand(4 * H, I, scale=0.4), rand(4 * H, R, scale=0.4),
            rand(4 * H, scale=0.2) if bias else None,
            tuple(rand(H, scale=0.5) for _ in range(3)) if peepholes else None,
            rand(R, H, scale=0.4) if P else None]


def _leaves(args):
    for a in args:
        if isinstance(a, tuple):
            yield from a
        elif a is not None:
            yield a


def _run(fn, args, generator_seed):
    """Outputs and the gradients of every input under a random loss of output, h_n and c_n."""
    args = [tuple(t.detach().clone().requires_grad_() for t in a) if isinstance(a, tuple)
            else None if a is None else a.detach().clone().requires_grad_() for a in args]
    out, h_n, c_n = fn(*args)
    g = torch.Generator().manual_seed(generator_seed)
    # drawn in float32 on the CPU whatever the dtype and device, so every run weighs its outputs alike
    w_out, w_h, w_c = (torch.randn(t.shape, generator=g).to(t.device, t.dtype) for t in (out, h_n, c_n))
    ((out * w_out).sum() + (h_n * w_h).sum() + (c_n.tanh() * w_c).sum()).backward()
    return (out, h_n, c_n), [leaf.grad for leaf in _leaves(args)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("peepholes", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_cpu_kernel_equals_reference_forward_and_backward(size, peepholes, bias):
    generator = torch.Generator().manual_seed(hash((size, peepholes, bias)) % 2**31)
    args = _layer_args(*size, peepholes, torch.float32, generator, bias=bias)
    (ref_out, ref_grads), (fast_out, fast_grads) = (_run(fn, args, 1) for fn in (lstmp_layer_reference,
                                                                                  cpu.lstmp_layer_cpu))
    torch.testing.assert_close(fast_out, ref_out, rtol=1e-5, atol=1e-5)
    assert len(fast_grads) == len(ref_grads)
    for fast, ref in zip(fast_grads, ref_grads):
        torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("peepholes,proj", [(False, 0), (True, 3)])
def test_cpu_kernel_passes_gradcheck_in_float64(peepholes, proj):
    generator = torch.Generator().manual_seed(3)
    args = _layer_args(3, 2, 3, 4, proj, peepholes, torch.float64, generator)
    w_ci, w_cf, w_co = args[6] if peepholes else (None, None, None)
    inputs = (*args[:6], w_ci, w_cf, w_co, args[7])
    assert torch.autograd.gradcheck(cpu.LSTMPFunction.apply, inputs)


def test_cpu_kernel_without_state_gradients_and_without_grad():
    """Only the output used (h_n, c_n get no gradient), and a forward under no_grad."""
    generator = torch.Generator().manual_seed(5)
    args = _layer_args(5, 4, 3, 6, 2, True, torch.float32, generator)
    grads = []
    for fn in (lstmp_layer_reference, cpu.lstmp_layer_cpu):
        x = args[0].detach().clone().requires_grad_()
        fn(x, *args[1:])[0].square().sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0])
    with torch.no_grad():
        torch.testing.assert_close(cpu.lstmp_layer_cpu(*args), lstmp_layer_reference(*args))


def _saved_bytes(fn, args) -> int:
    """Bytes of the tensors fn(*args) saves for backward, each storage once."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(seen.values())


def test_cpu_kernel_saves_less_for_backward_than_the_reference():
    generator = torch.Generator().manual_seed(6)
    args = _layer_args(20, 8, 5, 32, 8, True, torch.float32, generator)
    assert _saved_bytes(cpu.lstmp_layer_cpu, args) <= _saved_bytes(lstmp_layer_reference, args)


def check_module_equals_reference(kernel, device, proj_size, peepholes, bidirectional, batch_first):
    """A 2-layer LSTM on `kernel` against the same weights on the reference: outputs, state and every
    gradient."""
    torch.manual_seed(7)
    fast = LSTM(5, 8, num_layers=2, proj_size=proj_size, peepholes=peepholes, bidirectional=bidirectional,
                batch_first=batch_first, kernel=kernel, device=device)
    ref = LSTM(5, 8, num_layers=2, proj_size=proj_size, peepholes=peepholes, bidirectional=bidirectional,
               batch_first=batch_first, kernel="reference")
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 6, 5)
    directions = 2 if bidirectional else 1
    hx = (torch.randn(2 * directions, 4 if batch_first else 6, proj_size or 8),
          torch.randn(2 * directions, 4 if batch_first else 6, 8))
    results = []
    for module in (ref, fast):
        on = next(module.parameters()).device
        xi = x.to(on).requires_grad_()
        out, (h, c) = module(xi, tuple(t.to(on) for t in hx))
        (out.sin().sum() + h.sum() + c.square().sum()).backward()
        results.append([t.cpu() for t in (out, h, c, xi.grad, *(p.grad for p in module.parameters()))])
    torch.testing.assert_close(results[1][:4], results[0][:4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[1][4:], results[0][4:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("proj_size,peepholes,bidirectional,batch_first",
                         [(0, False, False, False), (3, True, True, True), (0, True, False, True)])
def test_lstm_module_cpu_kernel_equals_reference(proj_size, peepholes, bidirectional, batch_first):
    check_module_equals_reference("cpu", "cpu", proj_size, peepholes, bidirectional, batch_first)


def test_auto_picks_the_cpu_kernel_for_float32_and_the_reference_for_float64():
    assert KERNELS[0] == "auto"
    assert fast_path("auto", torch.zeros(2, 1, 3)) is cpu.lstmp_layer_cpu
    assert fast_path("auto", torch.zeros(2, 1, 3, dtype=torch.float64)) is None
    assert fast_path("reference", torch.zeros(2, 1, 3)) is None
    assert fast_path("cpu", torch.zeros(2, 1, 3, dtype=torch.float64)) is cpu.lstmp_layer_cpu


def test_kernel_is_validated():
    with pytest.raises(ValueError, match="kernel must be one of"):
        LSTM(3, 4, kernel="fast")
    with pytest.raises(ValueError, match="float32/float64"):
        LSTM(3, 4, kernel="cpu", dtype=torch.bfloat16)(torch.zeros(2, 1, 3, dtype=torch.bfloat16))
    assert "kernel=reference" in repr(LSTM(3, 4, kernel="reference"))


def test_cpu_kernel_saturates_like_the_reference():
    """Gates and cells far outside exp's float range (|x| > 88) stay finite and equal the reference."""
    generator = torch.Generator().manual_seed(8)
    args = _layer_args(6, 4, 3, 8, 0, True, torch.float32, generator)
    args[0] = (args[0] * 300).detach().requires_grad_()
    args[2] = (args[2] * 200).detach().requires_grad_()
    (ref_out, ref_grads), (fast_out, fast_grads) = (_run(fn, args, 2) for fn in (lstmp_layer_reference,
                                                                                  cpu.lstmp_layer_cpu))
    assert all(torch.isfinite(t).all() for t in (*fast_out, *fast_grads))
    torch.testing.assert_close(fast_out, ref_out)
    for fast, ref in zip(fast_grads, ref_grads):
        torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


def test_model_config_kernel_reaches_every_layer():
    from lstmlm.model import LanguageModel, ModelConfig

    model = LanguageModel(11, ModelConfig(hidden_size=8, num_layers=2, kernel="reference"))
    assert [layer.kernel for layer in model.layers] == ["reference", "reference"]
    with pytest.raises(ValueError, match="kernel must be one of"):
        LanguageModel(11, ModelConfig(kernel="fast"))


def test_cpu_kernel_forced_under_bf16_autocast_runs_in_float32():
    """`kernel="cpu"` named under a CPU autocast computes in float32 rather than failing on bf16."""
    torch.manual_seed(8)
    fast, ref = LSTM(5, 8, proj_size=3, peepholes=True, kernel="cpu"), LSTM(5, 8, proj_size=3, peepholes=True)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = fast(x)
    ref_out, (ref_h, ref_c) = ref(x)  # float32, no autocast
    assert out.dtype == torch.float32
    torch.testing.assert_close((out, h, c), (ref_out, ref_h, ref_c), rtol=1e-5, atol=1e-5)


def test_cpu_kernel_reuses_buffers_only_when_nothing_holds_them():
    """The kernel's workspace hands large buffers out again: an output the caller still holds, and the
    tensors two live graphs saved for backward, must never be written over by a later call."""
    torch.manual_seed(9)
    T, B, I, H = 64, 64, 8, 256  # out (T, B, H) is 4 MiB, gates 16 MiB: both from the workspace
    fast, ref = LSTM(I, H, peepholes=True, kernel="cpu"), LSTM(I, H, peepholes=True, kernel="reference")
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(T, B, I)
    results = []
    for module in (fast, ref):
        xi = x.clone().requires_grad_()
        first, _ = module(xi)
        kept = first.detach().clone()
        second, _ = module(xi * 0.5)  # while `first` and its graph are alive
        assert torch.equal(first.detach(), kept)
        (first.sum() + second.square().sum()).backward()
        third, _ = module(xi)  # after backward: buffers free again, results unchanged
        results.append((first, second, third, xi.grad))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[0][2], results[0][0])
