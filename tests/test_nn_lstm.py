"""lstmlm.nn.LSTM against torch.nn.LSTM and against float64 finite differences."""
import pytest
import torch
from torch import nn

from lstmlm.nn import LSTM, lstmp_layer_reference


def _pair(proj_size, bidirectional=False, batch_first=False, num_layers=2, dtype=torch.float64):
    torch.manual_seed(0)
    ref = nn.LSTM(5, 8, num_layers, batch_first=batch_first, bidirectional=bidirectional,
                  proj_size=proj_size, dtype=dtype)
    ours = LSTM(5, 8, num_layers, batch_first=batch_first, bidirectional=bidirectional,
                proj_size=proj_size, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("proj_size", [0, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_equals_torch_lstm_forward_and_backward(proj_size, bidirectional, batch_first):
    ref, ours = _pair(proj_size, bidirectional, batch_first)
    assert set(ref.state_dict()) == set(ours.state_dict())  # same names, no peepholes
    x = torch.randn(4, 7, 5, dtype=torch.float64)  # (T, B, I) or (B, T, I)
    directions = 2 if bidirectional else 1
    h0 = torch.randn(2 * directions, 4 if batch_first else 7, proj_size or 8, dtype=torch.float64)
    c0 = torch.randn(2 * directions, 4 if batch_first else 7, 8, dtype=torch.float64)
    results = []
    for module in (ref, ours):
        xi = x.clone().requires_grad_()
        out, (h, c) = module(xi, (h0, c0))
        (out.sin().sum() + h.cos().sum() + (c * c).sum()).backward()
        grads = {name: p.grad.clone() for name, p in module.named_parameters()}
        results.append((out, h, c, xi.grad, grads))
    (o1, h1, c1, gx1, g1), (o2, h2, c2, gx2, g2) = results
    torch.testing.assert_close(o2, o1)
    torch.testing.assert_close(h2, h1)
    torch.testing.assert_close(c2, c1)
    torch.testing.assert_close(gx2, gx1)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], msg=name)


def test_unbatched_and_default_state_match_torch():
    ref, ours = _pair(3, num_layers=1)
    x = torch.randn(6, 5, dtype=torch.float64)  # (T, I)
    out_ref, (h_ref, c_ref) = ref(x)
    out, (h, c) = ours(x)
    assert out.shape == (6, 3) and h.shape == (1, 3) and c.shape == (1, 8)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(c, c_ref)


def test_from_torch_and_to_torch_round_trip():
    ref = nn.LSTM(4, 6, 2, proj_size=2)
    ours = LSTM.from_torch(ref)
    back = ours.to_torch()
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(back(x)[0], ref(x)[0])
    with_peep = LSTM.from_torch(ref, peepholes=True)
    torch.testing.assert_close(with_peep(x)[0], ref(x)[0])  # zero peepholes change nothing
    with torch.no_grad():
        with_peep.weight_ci_l0.fill_(0.5)
    assert not torch.allclose(with_peep(x)[0], ref(x)[0])
    with pytest.raises(ValueError, match="peephole"):
        with_peep.to_torch()


def test_peephole_parameters_are_diagonal_and_named():
    lstm = LSTM(3, 5, 2, proj_size=2, peepholes=True)
    names = dict(lstm.named_parameters())
    for layer in range(2):
        for p in ("ci", "cf", "co"):
            assert names[f"weight_{p}_l{layer}"].shape == (5,)
        assert names[f"weight_hr_l{layer}"].shape == (2, 5)
        assert names[f"weight_hh_l{layer}"].shape == (20, 2)


def _lstmp_step_by_hand(x, h, c, w_ih, w_hh, b, w_ci, w_cf, w_co, w_hr):
    """The paper's equations written out gate by gate, for one time step."""
    H = w_hh.shape[0] // 4
    W = lambda k: (w_ih[k * H:(k + 1) * H], w_hh[k * H:(k + 1) * H], b[k * H:(k + 1) * H])  # noqa: E731
    (wi, ui, bi), (wf, uf, bf), (wg, ug, bg), (wo, uo, bo) = W(0), W(1), W(2), W(3)
    i = torch.sigmoid(x @ wi.T + h @ ui.T + w_ci * c + bi)
    f = torch.sigmoid(x @ wf.T + h @ uf.T + w_cf * c + bf)
    g = torch.tanh(x @ wg.T + h @ ug.T + bg)
    c = f * c + i * g
    o = torch.sigmoid(x @ wo.T + h @ uo.T + w_co * c + bo)
    return (o * torch.tanh(c)) @ w_hr.T, c


def test_peephole_projection_equations():
    torch.manual_seed(1)
    lstm = LSTM(3, 4, proj_size=2, peepholes=True, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, (h_n, c_n) = lstm(x)
    w_ih, w_hh, b, (w_ci, w_cf, w_co), w_hr = lstm.layer_weights(0)
    h = torch.zeros(2, 2, dtype=torch.float64)
    c = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(5):
        h, c = _lstmp_step_by_hand(x[t], h, c, w_ih, w_hh, b, w_ci, w_cf, w_co, w_hr)
        torch.testing.assert_close(out[t], h)
    torch.testing.assert_close(c_n[0], c)


def test_gradcheck_with_peepholes_and_projection():
    torch.manual_seed(2)
    T, B, I, H, P = 4, 2, 3, 5, 2
    args = [torch.randn(T, B, I), torch.randn(B, P), torch.randn(B, H), torch.randn(4 * H, I) * 0.5,
            torch.randn(4 * H, P) * 0.5, torch.randn(4 * H) * 0.1, torch.randn(H), torch.randn(H), torch.randn(H),
            torch.randn(P, H) * 0.5]
    args = [a.double().requires_grad_() for a in args]

    def f(x, h0, c0, w_ih, w_hh, b, w_ci, w_cf, w_co, w_hr):
        return lstmp_layer_reference(x, h0, c0, w_ih, w_hh, b, (w_ci, w_cf, w_co), w_hr)

    assert torch.autograd.gradcheck(f, args)


def test_gradcheck_stacked_bidirectional_module():
    torch.manual_seed(3)
    lstm = LSTM(3, 4, num_layers=2, proj_size=2, peepholes=True, bidirectional=True, dtype=torch.float64)
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    params = list(lstm.parameters())

    def f(x, *weights):
        state = dict(zip([n for n, _ in lstm.named_parameters()], weights))
        out, (h, c) = torch.func.functional_call(lstm, state, (x,))
        return out, c

    assert torch.autograd.gradcheck(f, (x, *[p.detach().requires_grad_() for p in params]))


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_size": 0}, "hidden_size"), ({"dropout": 1.0}, "dropout"), ({"proj_size": 4}, "proj_size"),
    ({"num_layers": -1}, "num_layers")])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    base = {"input_size": 3, "hidden_size": 4}
    with pytest.raises(ValueError, match=match):
        LSTM(**{**base, **kwargs})


def test_bad_input_shape_raises():
    lstm = LSTM(3, 4)
    with pytest.raises(ValueError, match="input_size=3"):
        lstm(torch.randn(2, 2, 5))
    with pytest.raises(ValueError, match="hx shapes"):
        lstm(torch.randn(2, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
