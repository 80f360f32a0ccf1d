"""Bigram tokens (non-overlapping pairs) and bigram input: vocabularies, scoring, sampling, training."""
import math

import numpy as np
import pytest
import torch

from lstmlm.data import BatchStream
from lstmlm.evaluate import evaluate
from lstmlm.model import LanguageModel, ModelConfig, nats_per_token
from lstmlm.sample import sample_text
from lstmlm.train import make_configs, start_training
from lstmlm.vocab import PairVocab, Vocab

TEXT8 = Vocab(list(" abcdefghijklmnopqrstuvwxyz"))


def _uniform(model):
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    return model


def test_all_pairs_for_text8():
    pairs = PairVocab.from_ids(TEXT8, TEXT8.encode("ab"))
    assert len(pairs) == 729
    tokens = pairs.encode(TEXT8.encode("the cat"))  # odd: the trailing 't' is not a pair
    assert tokens.tolist() == [20 * 27 + 8, 5 * 27 + 0, 3 * 27 + 1]
    assert pairs.fallback_nats.sum() == 0


def test_seen_pairs_and_fallback_form_a_distribution():
    chars = Vocab([chr(ord("A") + i) for i in range(70)])  # 4,900 pairs > max_pairs
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 70, size=6000)
    pairs = PairVocab.from_ids(chars, ids, max_pairs=4096)
    seen = {(int(a), int(b)) for a, b in zip(ids[0::2], ids[1::2])}
    assert len(pairs) == len(seen) + 70
    # P(a, b) under the policy, for random token probabilities, sums to 1 over all V² pairs
    probs = torch.softmax(torch.randn(len(pairs), dtype=torch.float64), 0).numpy()
    total = 0.0
    for a in range(70):
        for b in range(70):
            token = pairs.table[a, b]
            total += probs[token] * math.exp(-pairs.fallback_nats[token])
    assert total == pytest.approx(1.0)
    unseen = next((a, b) for a in range(70) for b in range(70) if (a, b) not in seen)
    assert pairs.second[pairs.table[unseen]] == -1  # mapped to its first character's fallback


@pytest.mark.parametrize("n", [1000, 1001])
def test_uniform_pair_model_scores_log2_v_bits_on_the_same_characters(n):
    torch.manual_seed(0)
    ids = np.random.default_rng(1).integers(0, 27, size=n)
    pairs = PairVocab(TEXT8)
    pair_model = _uniform(LanguageModel(len(pairs), ModelConfig(tokens="bigram", input="embedding", hidden_size=8)))
    char_model = _uniform(LanguageModel(27, ModelConfig(hidden_size=8)))
    for model, p in ((pair_model, pairs), (char_model, None)):
        result = evaluate(model, ids, batch_size=5, num_unrollings=7, pairs=p)
        assert result["chars"] == n - 2  # every model scores characters 2 .. n-1
        assert result["bits_per_char"] == pytest.approx(math.log2(27))


def test_pair_scoring_matches_a_hand_computation_with_odd_tail():
    torch.manual_seed(0)
    pairs = PairVocab(TEXT8)
    model = LanguageModel(len(pairs), ModelConfig(tokens="bigram", input="embedding", hidden_size=8)).eval()
    ids = np.random.default_rng(2).integers(0, 27, size=41)  # 20 pairs + an odd character
    result = evaluate(model, ids, batch_size=1, num_unrollings=6, pairs=pairs)
    tokens = torch.from_numpy(pairs.encode(ids)).long()
    logits, _ = model(tokens[None])  # (1, 20, 729): the last step predicts the pair after the last one
    nats = nats_per_token(logits[:, :-1], tokens[None, 1:]).item() * 19
    log_probs = torch.log_softmax(logits[0, -1], 0)
    nats -= torch.logsumexp(log_probs[int(ids[-1]) * 27:(int(ids[-1]) + 1) * 27], 0).item()
    assert result["chars"] == 39
    assert result["nats_per_char"] == pytest.approx(nats / 39, rel=1e-5)


def test_bigram_input_sees_two_characters_and_streams_carry_context():
    torch.manual_seed(0)
    model = LanguageModel(5, ModelConfig(input="bigram", embedding_size=4, hidden_size=8)).eval()
    a, _ = model(torch.tensor([[1, 2, 3]]))  # pairs (1,2), (2,3): two predictions
    b, _ = model(torch.tensor([[4, 2, 3]]))  # only the first pair's previous character differs
    assert a.shape == (1, 2, 5) and not torch.allclose(a[0, 0], b[0, 0])
    stream = BatchStream(np.arange(100), batch_size=2, num_unrollings=4, context=1)
    first, second = stream.next_batch(), stream.next_batch()
    assert first.shape == (2, 6)
    assert first[0].tolist() == [99, 0, 1, 2, 3, 4]  # one character of left context, wrapping
    assert second[0, :2].tolist() == first[0, -2:].tolist()  # the next window overlaps by the context


@pytest.mark.parametrize("cfg", [ModelConfig(tokens="bigram", input="embedding", hidden_size=8),
                                 ModelConfig(input="bigram", embedding_size=4, hidden_size=8)])
@pytest.mark.parametrize("prime", ["", "t", "th", "the"])
def test_sampling_any_prime_length(cfg, prime):
    torch.manual_seed(0)
    pairs = PairVocab(TEXT8) if cfg.tokens == "bigram" else None
    model = LanguageModel(729 if pairs else 27, cfg)
    texts = ["".join(sample_text(model, TEXT8, prime, 25, seed=s, pairs=pairs)) for s in (1, 1, 2)]
    assert texts[0] == texts[1] != texts[2]
    assert len(texts[0]) == 25 and set(texts[0]) <= set(TEXT8.symbols)


def test_odd_prime_completes_its_half_pair():
    """A model that puts all probability on pairs ending in 'z' must continue 'x' with 'z'."""
    pairs = PairVocab(TEXT8)
    model = LanguageModel(len(pairs), ModelConfig(tokens="bigram", input="embedding", hidden_size=8))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-50.0)
        model.head.bias[26::27] = 0.0  # every (a, 'z')
    text = "".join(sample_text(model, TEXT8, "the x", 5, seed=0, pairs=pairs))
    assert text[0] == "z" and text[2] == "z" and text[4] == "z"


@pytest.mark.parametrize("tokens, input_kind", [("bigram", "embedding"), ("char", "bigram")])
def test_bigram_models_learn(tiny_corpus, tmp_path, tokens, input_kind):
    model_cfg, train_cfg = make_configs(None, {
        "corpus": str(tiny_corpus), "tokens": tokens, "input": input_kind, "embedding_size": 16, "hidden_size": 32,
        "batch_size": 8, "num_unrollings": 10, "steps": 150, "optimizer": "adam", "learning_rate": 0.01,
        "valid_every": 150, "sample_every": 0, "checkpoint_every": 150})
    summary = start_training(model_cfg, train_cfg, tmp_path / "run", progress=False)
    assert summary["valid_bits_per_char"] < 2.0  # 12 symbols: uniform is 3.58 bits
