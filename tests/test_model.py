import math

import numpy as np
import pytest
import torch

from lstmlm.evaluate import evaluate
from lstmlm.model import LanguageModel, ModelConfig, detach_state, nats_per_token
from lstmlm.sample import sample_text
from lstmlm.vocab import Vocab


@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(input="embedding", embedding_size=8, hidden_size=16,
                                                            num_layers=2, proj_size=6, peepholes=True, dropout=0.2)])
def test_shapes_and_state_carry(cfg):
    torch.manual_seed(0)
    model = LanguageModel(11, cfg).eval()
    ids = torch.randint(11, (3, 10))  # (B, T)
    logits, state = model(ids)
    assert logits.shape == (3, 10, 11)
    assert state[0].shape == (cfg.num_layers, 3, cfg.proj_size or cfg.hidden_size)
    # running in two chunks with the state carried equals one pass
    first, mid = model(ids[:, :4])
    second, _ = model(ids[:, 4:], detach_state(mid))
    torch.testing.assert_close(torch.cat([first, second], 1), logits)


def test_notebook_init_is_truncated_normal_around_minus_point_one():
    torch.manual_seed(0)
    model = LanguageModel(27, ModelConfig(hidden_size=64, init="notebook"))
    w = model.layers[0].weight_ih_l0
    assert -0.3 <= w.min() and w.max() <= 0.1
    assert abs(w.mean().item() + 0.1) < 0.01
    assert model.layers[0].bias_ih_l0.abs().sum() == 0 and model.head.bias.abs().sum() == 0


def test_evaluate_scores_every_character_once():
    """A model that always predicts uniform gives exactly log2(V) bits on every prediction."""
    torch.manual_seed(0)
    model = LanguageModel(5, ModelConfig(hidden_size=4))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    ids = np.random.default_rng(0).integers(0, 5, size=1001).astype(np.uint8)
    result = evaluate(model, ids, batch_size=7, num_unrollings=13)  # 999 = 7 * 142 + 5: a tail
    assert result["chars"] == 999
    assert result["bits_per_char"] == pytest.approx(math.log2(5))


def test_evaluate_equals_one_long_stream_for_batch_one():
    torch.manual_seed(0)
    model = LanguageModel(6, ModelConfig(hidden_size=8)).eval()
    ids = np.random.default_rng(1).integers(0, 6, size=301)
    result = evaluate(model, ids, batch_size=1, num_unrollings=17)
    x = torch.from_numpy(ids).long()
    logits, _ = model(x[None, 1:-1])  # the first two characters are context
    expected = nats_per_token(logits, x[None, 2:]).item()
    assert result["nats_per_char"] == pytest.approx(expected, rel=1e-5)


def test_evaluate_tail_continues_the_last_stream():
    torch.manual_seed(0)
    model = LanguageModel(6, ModelConfig(hidden_size=8)).eval()
    ids = np.random.default_rng(2).integers(0, 6, size=24)  # 22 predictions = 4 streams of 5 + tail of 2
    result = evaluate(model, ids, batch_size=4, num_unrollings=3)
    x = torch.from_numpy(ids).long()[1:]  # inputs start at character 1, targets at 2
    total = 0.0
    for b in range(4):
        end = 22 if b == 3 else (b + 1) * 5
        logits, _ = model(x[None, b * 5:end])
        total += nats_per_token(logits, x[None, b * 5 + 1:end + 1]).item() * (end - b * 5)
    assert result["nats_per_char"] == pytest.approx(total / 22, rel=1e-5)


def test_sampling_is_reproducible_and_respects_options():
    torch.manual_seed(0)
    vocab = Vocab.from_text("abcdef ")
    model = LanguageModel(len(vocab), ModelConfig(hidden_size=8))
    a = "".join(sample_text(model, vocab, "ab", 50, temperature=1.0, seed=3))
    b = "".join(sample_text(model, vocab, "ab", 50, temperature=1.0, seed=3))
    c = "".join(sample_text(model, vocab, "ab", 50, temperature=1.0, seed=4))
    assert a == b and len(a) == 50 and a != c
    greedy = ["".join(sample_text(model, vocab, "abc", 20, temperature=0, seed=s)) for s in (1, 2)]
    assert greedy[0] == greedy[1]
    top1 = "".join(sample_text(model, vocab, "abc", 20, temperature=1.0, top_k=1, seed=9))
    assert top1 == greedy[0]
    assert len("".join(sample_text(model, vocab, "", 10, seed=0))) == 10
    with pytest.raises(ValueError, match="'x'"):
        list(sample_text(model, vocab, "abx", 5))
    with pytest.raises(ValueError, match="temperature"):
        list(sample_text(model, vocab, "ab", 5, temperature=-1))


@pytest.mark.parametrize("kwargs, match", [({"hidden_size": 0}, "hidden_size"), ({"dropout": 1.0}, "dropout"),
                                           ({"input": "bytes"}, "input"), ({"proj_size": 64}, "proj_size")])
def test_bad_model_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)
