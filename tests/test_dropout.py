"""Each regulariser's defining property, and deterministic evaluation."""
import pytest
import torch
import torch.nn.functional as F

from lstmlm import dropout as drop
from lstmlm.model import LanguageModel, ModelConfig
from lstmlm.nn import lstmp_layer_reference


def test_zaremba_dropout_masks_every_element_independently():
    torch.manual_seed(0)
    out = drop.dropout(torch.ones(50, 4, 64), 0.5, training=True, locked=False)
    assert not torch.equal(out[0], out[1])
    assert set(out.unique().tolist()) == {0.0, 2.0}


def test_locked_dropout_is_the_same_at_every_time_step():
    torch.manual_seed(0)
    out = drop.dropout(torch.ones(50, 4, 64), 0.5, training=True, locked=True)  # (T, B, F)
    assert torch.equal(out, out[:1].expand_as(out))
    assert 0.3 < (out[0] == 0).float().mean() < 0.7 and set(out.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(out[:, 0], out[:, 1])  # but differs between sequences of the batch


def test_embedding_dropout_drops_whole_rows():
    torch.manual_seed(0)
    weight = torch.randn(100, 8)
    dropped = drop.embedding_dropout(weight, 0.3, training=True)
    zero_rows = (dropped == 0).all(dim=1)
    assert 10 < zero_rows.sum() < 50
    torch.testing.assert_close(dropped[~zero_rows], weight[~zero_rows] / 0.7)
    model = LanguageModel(10, ModelConfig(input="embedding", embedding_size=8, embedding_dropout=0.5)).train()
    torch.manual_seed(1)
    x = model.embed(torch.tensor([[3, 3, 3, 3, 3, 3]]))  # every occurrence of a token: kept or dropped together
    assert (x == 0).all() or (x != 0).all(dim=-1).all()


def test_weight_drop_uses_one_mask_for_the_whole_sequence():
    torch.manual_seed(0)
    model = LanguageModel(6, ModelConfig(hidden_size=16, weight_drop=0.5)).train()
    ids = torch.randint(6, (3, 12))
    torch.manual_seed(5)
    logits, _ = model(ids)
    torch.manual_seed(5)
    layer = model.layers[0]
    w_ih, w_hh, bias, peep, w_hr = layer.layer_weights(0)
    masked = F.dropout(w_hh, 0.5, training=True)  # the same draw the model made
    x = F.one_hot(ids.t(), 6).float()
    out, _, _ = lstmp_layer_reference(x, torch.zeros(3, 16), torch.zeros(3, 16), w_ih, masked, bias, peep, w_hr)
    torch.testing.assert_close(logits, model.head(out.transpose(0, 1)))
    torch.manual_seed(6)
    assert not torch.allclose(model(ids)[0], logits)  # a new sequence, a new mask


def test_zoneout_keeps_previous_values_with_probability_p():
    torch.manual_seed(0)
    H = 2000
    args = [torch.randn(1, 1, 3), torch.randn(1, H), torch.randn(1, H), torch.randn(4 * H, 3), torch.randn(4 * H, H) * 0.01,
            None, None, None]
    _, h, c = lstmp_layer_reference(*args, zoneout=(0.3, 0.6, True))
    assert (c == args[2]).float().mean().item() == pytest.approx(0.3, abs=0.04)
    assert (h == args[1]).float().mean().item() == pytest.approx(0.6, abs=0.04)
    _, h_new, c_new = lstmp_layer_reference(*args)
    _, h_eval, c_eval = lstmp_layer_reference(*args, zoneout=(0.3, 0.6, False))  # the expectation
    torch.testing.assert_close(c_eval, 0.3 * args[2] + 0.7 * c_new)


def test_evaluation_is_deterministic_with_every_regulariser_on():
    cfg = ModelConfig(input="embedding", embedding_size=8, hidden_size=16, num_layers=2, dropout=0.3,
                      locked_dropout=True, embedding_dropout=0.2, weight_drop=0.3, zoneout_cell=0.1, zoneout_hidden=0.1)
    model = LanguageModel(9, cfg)
    ids = torch.randint(9, (2, 20))
    model.train()
    assert not torch.equal(model(ids)[0], model(ids)[0])
    model.eval()
    assert torch.equal(model(ids)[0], model(ids)[0])


@pytest.mark.parametrize("field", ["dropout", "embedding_dropout", "weight_drop", "zoneout_cell", "zoneout_hidden"])
def test_probabilities_out_of_range_are_refused(field):
    with pytest.raises(ValueError, match=f"{field} must be in \\[0, 1\\)"):
        ModelConfig(input="embedding", **{field: 1.0})
