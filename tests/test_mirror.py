"""The word-mirroring sequence-to-sequence model: data, masking, decoding, training, checkpoints, CLI."""
import io
import json
import random

import numpy as np
import pytest
import torch

from lstmlm import mirror
from lstmlm.cli import main
from lstmlm.mirror import (BOUNDARY, OFFSET, PAD, MirrorModel, MirrorModelConfig, MirrorTrainConfig,
                           SentenceWindows, beam_decode, corpus_ids, encode_sentences, greedy_decode, make_batch,
                           mirror_words, reverse_within_lengths, score)
from lstmlm.vocab import Vocab

TINY_MODEL = {"embedding_size": 16, "encoder_size": 32, "decoder_size": 48, "attention_size": 24}
TINY_TRAIN = {"max_words": 2, "batch_size": 32, "steps": 140, "learning_rate": 0.01, "lr_decay_every": 100,
              "valid_every": 70, "valid_sentences": 60, "checkpoint_every": 70}
LETTERS = Vocab(list(" abcdefghijklmnopqrstuvwxyz"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two that wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_rule_mirrors_each_word_in_place():
    assert mirror_words("the quick brown fox") == "eht kciuq nworb xof"
    assert mirror_words("a") == "a"
    assert mirror_words(mirror_words("never odd or even")) == "never odd or even"


def test_corpus_ids_collapse_white_space_and_name_unknown_characters(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("In the\n\nbeginning  God\tcreated.\n")
    vocab, ids = corpus_ids(str(path))
    assert vocab.decode(ids) == " ".join("In the beginning God created.".split()) + " "
    assert " " in vocab.symbols and "\n" not in vocab.symbols and "\t" not in vocab.symbols
    with pytest.raises(ValueError, match=r"never saw: '\.', 'G', 'I'"):
        corpus_ids(str(path), vocab=LETTERS)


def test_corpus_ids_handle_more_than_255_symbols(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text(" ".join(chr(0x4E00 + i) * 2 for i in range(300)))
    vocab, ids = corpus_ids(str(path))
    assert len(vocab) == 301 and vocab.decode(ids) == path.read_text()
    assert mirror_words(vocab.decode(ids[:8])) == vocab.decode(ids[:8])  # palindromic words


def test_windows_are_whole_words(tmp_path):
    text = "aa bbb c dddd ee f ggg"
    windows = SentenceWindows(LETTERS.encode(text), LETTERS)
    assert windows.num_words == 7
    assert windows.window(2, 3) == "c dddd ee"
    generator = torch.Generator().manual_seed(0)
    for n in (1, 3, 7):
        for sentence in windows.sample(n, 20, generator):
            assert len(sentence.split(" ")) == n and sentence in text
    with pytest.raises(ValueError, match="fewer than a window of 8"):
        windows.sample(8, 1, generator)


def test_make_batch_pairs_each_sentence_with_its_mirror_and_eos():
    batch = make_batch(LETTERS, ["ab cd", "xyz"])
    assert batch["source"].shape == (2, 5) and batch["lengths"].tolist() == [5, 3]
    assert batch["source"][1, 3:].tolist() == [PAD, PAD]
    decoded = LETTERS.decode(batch["target"][0, :5] - OFFSET)
    assert decoded == "ba dc" and batch["target"][0, 5] == BOUNDARY
    assert batch["target"][1, 3] == BOUNDARY and batch["target"][1, 4:].tolist() == [PAD, PAD]
    assert batch["decoder_input"][:, 0].tolist() == [BOUNDARY, BOUNDARY]
    assert torch.equal(batch["decoder_input"][:, 1:], torch.where(batch["target"][:, :-1] == BOUNDARY, PAD,
                                                                   batch["target"][:, :-1]))


def test_unknown_characters_raise_naming_them():
    with pytest.raises(ValueError, match=r"never saw: 'Q', 'é'"):
        encode_sentences(LETTERS, ["the Quick", "café"])


def test_reverse_within_lengths_reverses_only_the_real_part():
    x = torch.arange(8).view(2, 4)  # (B, S)
    out = reverse_within_lengths(x, torch.tensor([4, 2]))
    assert out.tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_within_lengths(out, torch.tensor([4, 2])), x)


def test_padding_does_not_change_a_sentence_s_logits():
    torch.manual_seed(0)
    model = MirrorModel(len(LETTERS), MirrorModelConfig(**TINY_MODEL)).eval()
    alone = make_batch(LETTERS, ["ab cd"])
    together = make_batch(LETTERS, ["ab cd", "a much longer sentence"])
    with torch.no_grad():
        one = model(alone["source"], alone["lengths"], alone["decoder_input"])  # (1, 6, V)
        two = model(together["source"], together["lengths"], together["decoder_input"])
    torch.testing.assert_close(two[0, :6], one[0])


def test_beam_of_one_is_greedy_and_wider_beams_decode():
    torch.manual_seed(1)
    model = MirrorModel(len(LETTERS), MirrorModelConfig(**TINY_MODEL)).eval()
    sentences = ["the cat", "brown", "a fox"]
    greedy = greedy_decode(model, LETTERS, sentences)
    assert beam_decode(model, LETTERS, sentences, 1) == greedy
    wide = beam_decode(model, LETTERS, sentences, 3)
    assert len(wide) == 3 and all(isinstance(s, str) for s in wide)
    with pytest.raises(ValueError, match="beam must be a positive integer"):
        beam_decode(model, LETTERS, sentences, 0)


def test_score_counts_exact_words_and_characters():
    result = score(["ab cd", "xyz"], ["ba dc", "zyy"])
    assert result["exact_accuracy"] == 0.5
    assert result["word_accuracy"] == pytest.approx(2 / 3)
    assert result["char_accuracy"] == pytest.approx(7 / 8)
    assert score(["ab cd"], ["ba"])["word_accuracy"] == 0.5  # a missing word counts as wrong


@pytest.fixture(scope="module")
def short_words(tmp_path_factory):
    """A corpus of random 1-4 letter words over 8 letters."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 4))) for _ in range(8000)]
    path = tmp_path_factory.mktemp("mirror") / "words.txt"
    path.write_text(" ".join(words))
    return path


@pytest.fixture(scope="module")
def trained(short_words, tmp_path_factory):
    run = tmp_path_factory.mktemp("mirror") / "run"
    model_cfg, train_cfg = mirror.make_mirror_configs({**TINY_MODEL, **TINY_TRAIN, "corpus": str(short_words)})
    summary = mirror.start_mirror_training(model_cfg, train_cfg, run, progress=False)
    return run, summary


def test_a_tiny_model_learns_to_mirror_words_it_never_saw(trained):
    run, summary = trained
    assert summary["valid_exact_accuracy"] >= 0.9, summary
    rows = mirror.MirrorMetricsLog.read(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [70, 140]
    assert (run / "learning_curve.png").exists() and json.loads((run / "config.json").read_text())["kind"] == "mirror"
    result = mirror.evaluate_mirror(run, lengths=[1, 2], sentences=50, beams=(1, 2))
    assert [(r["beam"], r["words"]) for r in result["rows"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(r["exact_accuracy"] >= 0.8 for r in result["rows"]), result["rows"]


def test_checkpoint_round_trip_gives_the_same_model(trained):
    run, _ = trained
    payload, model, vocab = mirror.load_mirror_model(run)
    assert payload["step"] == 140 and payload["kind"] == "mirror"
    again = MirrorModel(len(vocab), MirrorModelConfig(**payload["model_config"]))
    again.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=True)["model"])
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert mirror.mirror_lines(run, ["abc  dea", "", "h"]) == greedy_decode(model, vocab, ["abc dea"]) + [""] + \
        greedy_decode(model, vocab, ["h"])


def test_resume_continues_exactly(short_words, tmp_path):
    cfg = {**TINY_MODEL, **TINY_TRAIN, "corpus": str(short_words), "steps": 6, "valid_every": 3,
           "checkpoint_every": 3, "valid_sentences": 8}
    model_cfg, train_cfg = mirror.make_mirror_configs(cfg)
    mirror.start_mirror_training(model_cfg, train_cfg, tmp_path / "whole", progress=False)
    mirror.start_mirror_training(model_cfg, MirrorTrainConfig(**{**train_cfg.__dict__, "steps": 3}),
                                 tmp_path / "split", progress=False)
    mirror.resume_mirror_training(tmp_path / "split", steps=6, progress=False)
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
    for name in whole:
        assert torch.equal(whole[name], split[name]), name


def test_cli_mirror_text_stdin_eval_and_errors(trained, short_words, tmp_path, capsys, monkeypatch):
    run, _ = trained
    payload, model, vocab = mirror.load_mirror_model(run)
    capsys.readouterr()
    assert main(["mirror", str(run), "abc", "de"]) == 0
    assert capsys.readouterr().out == greedy_decode(model, vocab, ["abc de"])[0] + "\n"
    assert main(["mirror", str(run), "--beam", "1", "abc de"]) == 0
    assert capsys.readouterr().out == greedy_decode(model, vocab, ["abc de"])[0] + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\nhg fe\n"))
    assert main(["mirror", str(run), "--beam", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    out_json = tmp_path / "eval.json"
    assert main(["mirror", "eval", str(run), "--lengths", "1,3", "--sentences", "20", "--beam", "1", "2",
                 "--json", str(out_json), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| greedy | 3 | 20 |" in table and "| beam 2 | 1 | 20 |" in table
    assert len(json.loads(out_json.read_text())["rows"]) == 4

    for argv, message in [
        (["mirror", str(run), "the Quick"], "never saw: 'Q', 'i', 'k', 't', 'u'"),
        (["mirror", str(run), "--beam", "0", "abc"], "--beam must be >= 1"),
        (["mirror", "eval", str(run), "--lengths", "1,x"], "--lengths must be comma-separated"),
        (["mirror", "eval", str(run), "--lengths", "0,2"], "--lengths must be word counts >= 1"),
        (["mirror", "eval", str(run), "--corpus", "bible"], "corpus bible has characters the model never saw"),
        (["mirror", "train", "--corpus", str(short_words), "--max-words", "0", "--out", str(tmp_path / "x")],
         "max_words must be a positive integer"),
        (["mirror", "train", "--corpus", str(short_words), "--out", str(run)], "already holds a run"),
        (["mirror", "train", "--resume", str(run), "--batch-size", "8"], "drop --batch-size"),
        (["mirror", str(tmp_path / "nothing"), "abc"], "no checkpoint"),
    ]:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("lstmlm: error: ") and message in err and err.count("\n") == 1, (argv, err)


def test_a_language_model_run_is_refused(tmp_path):
    from lstmlm.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {}, "step": 0})
    with pytest.raises(ValueError, match="not a mirror model"):
        mirror.load_mirror_model(tmp_path)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="location_kernel must be odd"):
        MirrorModelConfig(location_kernel=4)
    with pytest.raises(ValueError, match="unknown mirror configuration fields: colour"):
        mirror.make_mirror_configs({"colour": 1})
    assert np.isfinite(MirrorTrainConfig().learning_rate)
