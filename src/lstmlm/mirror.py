"""Mirror every word: a character sequence-to-sequence LSTM with attention (the assignment's Problem 3).

    "the quick brown fox"  ->  "eht kciuq nworb xof"

The model learns the task; the rule `mirror_words` only makes training targets and scores outputs.

Data: a corpus is cut into train / valid / test parts (data.split_ids, "standard" 90/5/5 %), every
run of white space becomes one space, and a training pair is a random window of n whole words
(n drawn per batch from 1..max_words) and its mirror, made on the fly:

    part:    |... w17 w18 w19 w20 w21 w22 ...|      window of n = 3 words at word 18
    source:  "w18 w19 w20"            ids (B, S), padded with PAD
    target:  BOS "81w 91w 02w"        decoder input (B, T + 1); T = S for each sentence
             "81w 91w 02w" EOS        decoder output

Model (Bahdanau et al. 2015 attention, Luong et al. 2015 input feeding, Chorowski et al. 2015
location features), both recurrent parts lstmlm.nn.LSTM:

    source (B, S) -> embedding (B, S, E) -> forward LSTM  -> (B, S, H_e) --+
                                         -> backward LSTM -> (B, S, H_e) --+-> memory (B, S, 2 H_e)
    decoder step t:  [embedding(y_{t-1}); attentional vector_{t-1}] -> decoder LSTM -> h_t (B, H_d)
                     energy_s = v . tanh(W_k memory_s + W_q h_t + W_l conv(alpha_{t-1})_s)   (B, S)
                     alpha_t = softmax(energy) over the real characters; context = alpha_t @ memory
                     attentional vector_t = tanh(W_c [h_t; context]) -> logits (B, V)

The backward LSTM reads each sentence reversed within its own length (what pack_padded_sequence
does for torch.nn.LSTM), so padding never enters either direction. Token ids: PAD = 0, BOUNDARY = 1
(BOS as decoder input, EOS as output), character i of the vocabulary = i + 2.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import __version__
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .corpora import load_corpus
from .data import split_ids
from .nn import LSTM
from .train import MetricsLog, canonical_corpus, check_optimization, plot_learning_curve, split_overrides
from .vocab import Vocab

logger = logging.getLogger(__name__)

PAD, BOUNDARY, OFFSET = 0, 1, 2  # token ids; character i of the vocabulary is token i + OFFSET
KIND = "mirror"                   # checkpoints say what they hold, so an LM run is refused clearly


def mirror_words(text: str) -> str:
    """The rule: reverse the characters of every space-separated word. Used for targets and scoring only."""
    return " ".join(word[::-1] for word in text.split(" "))


def normalize_spaces(text: str) -> str:
    """Every run of white space (newlines, tabs, several spaces) as one space, none at the ends."""
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------------- data

def corpus_ids(corpus: str, alphabet: str = "raw", vocab: Vocab | None = None) -> tuple[Vocab, np.ndarray]:
    """The corpus as mirror-vocabulary ids (N,) with white space collapsed to single spaces.

    The vocabulary is the corpus's characters with all white space replaced by ' ' (built from the
    text unless given). With a given vocabulary, characters it lacks raise ValueError naming them.
    """
    text = load_corpus(corpus, alphabet=alphabet)
    chars = Vocab.from_text(text)
    raw = chars.encode(text, what=f"corpus {corpus}")  # (N,)
    del text
    visible = "".join(s for s in chars.symbols if not s.isspace())
    if vocab is None:
        vocab = Vocab(sorted(set(visible) | {" "}))
    else:
        missing = vocab.unknown(visible)
        if missing:
            raise ValueError(f"corpus {corpus} has characters the model never saw: {describe_chars(missing)}; "
                             f"the model knows only {''.join(vocab.symbols)!r} (use a corpus in the model's alphabet, "
                             f"or train a model on this one)")
    space = int(vocab.encode(" ")[0])
    table = np.array([space if s.isspace() else int(vocab.encode(s)[0]) for s in chars.symbols],
                     dtype=np.uint8 if len(vocab) <= 255 else np.int32)
    ids = table[raw]  # (N,)
    del raw
    is_space = ids == space
    keep = ~is_space
    keep[1:] |= ~is_space[:-1]  # a space survives only after a non-space
    return vocab, ids[keep]


def describe_chars(chars: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


class SentenceWindows:
    """Windows of whole words from one part of a corpus (ids with single spaces).

    word_starts / word_ends (W,) index the part; window(i, n) is words i .. i+n-1 and the spaces
    between them.
    """

    def __init__(self, ids: np.ndarray, vocab: Vocab):
        self.ids, self.vocab = ids, vocab
        is_space = ids == int(vocab.encode(" ")[0])  # (N,)
        word = ~is_space
        begins = word.copy()
        begins[1:] &= is_space[:-1]
        finishes = word.copy()
        finishes[:-1] &= is_space[1:]
        self.word_starts = np.flatnonzero(begins)  # (W,)
        self.word_ends = np.flatnonzero(finishes) + 1  # (W,) one past the last character
        self.num_words = len(self.word_starts)

    def window(self, first_word: int, num_words: int) -> str:
        return self.vocab.decode(self.ids[self.word_starts[first_word]:self.word_ends[first_word + num_words - 1]])

    def sample(self, num_words: int, count: int, generator: torch.Generator) -> list[str]:
        """count random windows of num_words words, drawn with generator (whose state a checkpoint saves)."""
        if self.num_words < num_words:
            raise ValueError(f"this part of the corpus has {self.num_words} words, fewer than a window of "
                             f"{num_words}; use a larger corpus or fewer --max-words")
        firsts = torch.randint(self.num_words - num_words + 1, (count,), generator=generator)
        return [self.window(int(i), num_words) for i in firsts]


def held_out_sentences(windows: SentenceWindows, lengths: list[int], count: int, seed: int) -> dict[int, list[str]]:
    """A fixed set: count windows of each length in lengths (words), the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return {n: windows.sample(n, count, generator) for n in lengths}


def encode_sentences(vocab: Vocab, sentences: list[str], what: str = "text") -> tuple[Tensor, Tensor]:
    """Sentences -> source tokens (B, S) padded with PAD, and lengths (B,).

    Characters outside the vocabulary raise ValueError naming them.
    """
    missing = vocab.unknown("".join(sentences))
    if missing:
        raise ValueError(f"{what} has characters the model never saw: {describe_chars(missing)}; it knows only "
                         f"{''.join(vocab.symbols)!r}")
    if any(not s for s in sentences):
        raise ValueError(f"{what} has an empty sentence; give at least one word per line")
    lengths = torch.tensor([len(s) for s in sentences])
    source = torch.full((len(sentences), int(lengths.max())), PAD, dtype=torch.long)  # (B, S)
    for b, s in enumerate(sentences):
        source[b, :len(s)] = torch.from_numpy(vocab.encode(s).astype(np.int64)) + OFFSET
    return source, lengths


def make_batch(vocab: Vocab, sentences: list[str]) -> dict[str, Tensor]:
    """Teacher-forcing tensors: source (B, S), lengths (B,), decoder input (B, T+1), target (B, T+1)."""
    source, lengths = encode_sentences(vocab, sentences)
    targets, _ = encode_sentences(vocab, [mirror_words(s) for s in sentences])  # (B, T) with T == S
    batch = targets.shape[0]
    decoder_input = torch.cat([torch.full((batch, 1), BOUNDARY), targets], dim=1)  # (B, T+1)
    target = torch.cat([targets, torch.full((batch, 1), PAD)], dim=1)  # (B, T+1)
    target[torch.arange(batch), lengths] = BOUNDARY  # EOS right after each sentence
    return {"source": source, "lengths": lengths, "decoder_input": decoder_input, "target": target}


# ---------------------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class MirrorModelConfig:
    """Architecture of a MirrorModel (the vocabulary size comes from the data)."""

    embedding_size: int = 32
    encoder_size: int = 128        # cells per encoder direction
    decoder_size: int = 128
    attention_size: int = 64
    location_filters: int = 8      # convolution channels over the previous alignment; 0: content only
    location_kernel: int = 9       # odd width of that convolution
    peepholes: bool = False

    def __post_init__(self):
        for name in ("embedding_size", "encoder_size", "decoder_size", "attention_size", "location_kernel"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.location_filters, int) or self.location_filters < 0:
            raise ValueError(f"location_filters must be an integer >= 0, got {self.location_filters!r}")
        if self.location_kernel % 2 == 0:
            raise ValueError(f"location_kernel must be odd, got {self.location_kernel}")


DecoderState = tuple[Tensor, Tensor, Tensor, Tensor]  # h (1, B, H_d), c (1, B, H_d), attentional (B, H_d), alpha (B, S)


@dataclass
class Memory:
    """The encoded source: memory (B, S, 2 H_e), its attention keys (B, S, A), mask (B, S) of real chars."""

    memory: Tensor
    keys: Tensor
    mask: Tensor

    def index_select(self, index: Tensor) -> "Memory":
        return Memory(self.memory[index], self.keys[index], self.mask[index])


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """x (B, S, ...) with each row's first lengths[b] entries reversed, the padding left in place."""
    steps = torch.arange(x.shape[1])  # (S,)
    index = lengths[:, None] - 1 - steps  # (B, S)
    index = torch.where(index >= 0, index, steps)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class MirrorModel(nn.Module):
    """Encoder (two lstmlm LSTMs, one per direction) and attention decoder (an lstmlm LSTM cell run step by step)."""

    def __init__(self, num_chars: int, config: MirrorModelConfig):
        super().__init__()
        self.config = config
        E, He, Hd, A = config.embedding_size, config.encoder_size, config.decoder_size, config.attention_size
        self.num_tokens = num_chars + OFFSET
        self.embedding = nn.Embedding(self.num_tokens, E, padding_idx=PAD)
        self.encoder_forward = LSTM(E, He, batch_first=True, peepholes=config.peepholes)
        self.encoder_backward = LSTM(E, He, batch_first=True, peepholes=config.peepholes)
        self.bridge = nn.Linear(2 * He, Hd)
        self.decoder = LSTM(E + Hd, Hd, peepholes=config.peepholes)
        self.key = nn.Linear(2 * He, A, bias=False)
        self.query = nn.Linear(Hd, A)
        self.energy = nn.Linear(A, 1, bias=False)
        if config.location_filters:
            self.location_conv = nn.Conv1d(1, config.location_filters, config.location_kernel,
                                           padding=config.location_kernel // 2, bias=False)
            self.location = nn.Linear(config.location_filters, A, bias=False)
        self.combine = nn.Linear(Hd + 2 * He, Hd, bias=False)
        self.head = nn.Linear(Hd, self.num_tokens)

    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, DecoderState]:
        """source (B, S), lengths (B,) -> the memory and the decoder's first state."""
        x = self.embedding(source)  # (B, S, E)
        forward, _ = self.encoder_forward(x)  # (B, S, H_e)
        backward, _ = self.encoder_backward(reverse_within_lengths(x, lengths))
        backward = reverse_within_lengths(backward, lengths)  # (B, S, H_e), position s has read s .. end
        memory = torch.cat([forward, backward], dim=2)  # (B, S, 2 H_e)
        mask = torch.arange(source.shape[1])[None, :] < lengths[:, None]  # (B, S)
        last = forward[torch.arange(source.shape[0]), lengths - 1]  # (B, H_e)
        h = torch.tanh(self.bridge(torch.cat([last, backward[:, 0]], dim=1)))  # (B, H_d)
        state = (h[None], torch.zeros_like(h)[None], torch.zeros_like(h), torch.zeros(source.shape, dtype=h.dtype))
        return Memory(memory, self.key(memory), mask), state

    def step(self, previous: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState]:
        """One decoder step: previous tokens (B,) -> logits (B, V) and the next state."""
        h, c, attentional, alpha = state
        x = torch.cat([self.embedding(previous), attentional], dim=1)  # (B, E + H_d)
        out, (h, c) = self.decoder(x[None], (h, c))  # out (1, B, H_d)
        query = out[0]  # (B, H_d)
        features = memory.keys + self.query(query)[:, None, :]  # (B, S, A)
        if self.config.location_filters:
            located = self.location_conv(alpha[:, None, :])  # (B, F, S)
            features = features + self.location(located.transpose(1, 2))  # (B, S, A)
        energy = self.energy(torch.tanh(features)).squeeze(2)  # (B, S)
        alpha = torch.softmax(energy.masked_fill(~memory.mask, -math.inf), dim=1)  # (B, S)
        context = torch.bmm(alpha[:, None, :], memory.memory).squeeze(1)  # (B, 2 H_e)
        attentional = torch.tanh(self.combine(torch.cat([query, context], dim=1)))  # (B, H_d)
        return self.head(attentional), (h, c, attentional, alpha)

    def forward(self, source: Tensor, lengths: Tensor, decoder_input: Tensor) -> Tensor:
        """Teacher forcing: source (B, S), lengths (B,), decoder_input (B, T) -> logits (B, T, V)."""
        memory, state = self.encode(source, lengths)
        logits = []
        for t in range(decoder_input.shape[1]):
            step_logits, state = self.step(decoder_input[:, t], state, memory)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)  # (B, T, V)


def reorder_state(state: DecoderState, index: Tensor) -> DecoderState:
    h, c, attentional, alpha = state
    return h[:, index], c[:, index], attentional[index], alpha[index]


# -------------------------------------------------------------------------------------------- decoding

def max_output_length(lengths: Tensor) -> int:
    """Decoding stops here if no EOS came: the longest source plus slack (a mirror is as long as its source)."""
    return int(lengths.max()) + 10


@torch.no_grad()
def greedy_decode(model: MirrorModel, vocab: Vocab, sentences: list[str]) -> list[str]:
    """The likeliest character at every step, for a batch of sentences; returns the mirrored texts."""
    model.eval()
    source, lengths = encode_sentences(vocab, sentences)
    memory, state = model.encode(source, lengths)
    batch = len(sentences)
    previous = torch.full((batch,), BOUNDARY, dtype=torch.long)
    outputs = torch.full((batch, max_output_length(lengths)), BOUNDARY, dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    for t in range(outputs.shape[1]):
        logits, state = model.step(previous, state, memory)  # (B, V)
        previous = logits.argmax(dim=1)  # (B,)
        outputs[:, t] = torch.where(done, BOUNDARY, previous)
        done |= previous == BOUNDARY
        if bool(done.all()):
            break
    return [_tokens_to_text(vocab, row) for row in outputs]


@torch.no_grad()
def beam_decode(model: MirrorModel, vocab: Vocab, sentences: list[str], beam: int) -> list[str]:
    """Beam search with beam hypotheses per sentence, scored by summed log-probability; the best
    finished hypothesis of each sentence. beam = 1 is greedy decoding."""
    if not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be a positive integer, got {beam!r}")
    model.eval()
    source, lengths = encode_sentences(vocab, sentences)
    memory, state = model.encode(source, lengths)
    batch, K = len(sentences), beam
    flat = torch.arange(batch).repeat_interleave(K)  # (B*K,) sentence of each hypothesis
    memory, state = memory.index_select(flat), reorder_state(state, flat)
    scores = torch.full((batch, K), -math.inf)
    scores[:, 0] = 0.0  # only one live hypothesis at the start
    previous = torch.full((batch * K,), BOUNDARY, dtype=torch.long)
    finished = torch.zeros(batch, K, dtype=torch.bool)
    steps = max_output_length(lengths)
    history = torch.full((batch, K, 0), BOUNDARY, dtype=torch.long)
    for _ in range(steps):
        logits, state = model.step(previous, state, memory)  # (B*K, V)
        logp = torch.log_softmax(logits, dim=1).view(batch, K, -1)  # (B, K, V)
        V = logp.shape[2]
        # a finished hypothesis continues only with BOUNDARY, at no cost, so it keeps its score
        stay = torch.full((V,), -math.inf)
        stay[BOUNDARY] = 0.0
        logp = torch.where(finished[:, :, None], stay, logp)
        candidates = (scores[:, :, None] + logp).view(batch, K * V)  # (B, K*V)
        scores, chosen = candidates.topk(K, dim=1)  # (B, K)
        origin, token = chosen // V, chosen % V  # (B, K)
        finished = finished.gather(1, origin) | (token == BOUNDARY)
        history = torch.cat([history.gather(1, origin[:, :, None].expand(-1, -1, history.shape[2])),
                             token[:, :, None]], dim=2)  # (B, K, t+1)
        rows = (origin + torch.arange(batch)[:, None] * K).view(-1)  # (B*K,)
        state = reorder_state(state, rows)
        previous = token.view(-1)
        if bool(finished.all()):
            break
    best = scores.argmax(dim=1)  # (B,) topk keeps them sorted, so this is column 0
    return [_tokens_to_text(vocab, history[b, best[b]]) for b in range(batch)]


def _tokens_to_text(vocab: Vocab, tokens: Tensor) -> str:
    chars = []
    for token in tokens.tolist():
        if token == BOUNDARY:
            break
        if token >= OFFSET:
            chars.append(vocab.symbols[token - OFFSET])
    return "".join(chars)


def decode(model: MirrorModel, vocab: Vocab, sentences: list[str], beam: int = 1,
           batch_size: int = 256) -> list[str]:
    """Mirror sentences with the model (greedy when beam is 1), in batches of similar length."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    results: list[str] = [""] * len(sentences)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        texts = [sentences[i] for i in chunk]
        outputs = greedy_decode(model, vocab, texts) if beam == 1 else beam_decode(model, vocab, texts, beam)
        for i, out in zip(chunk, outputs):
            results[i] = out
    return results


# ------------------------------------------------------------------------------------------- scoring

def score(sentences: list[str], outputs: list[str]) -> dict:
    """Accuracy of outputs against the mirrored sentences.

    exact: whole sentence right. word: target word i equals output word i (a missing word is wrong).
    char: target character i equals output character i (missing characters are wrong); the
    denominators are the target's words and characters.
    """
    exact = words = words_right = chars = chars_right = 0
    for sentence, output in zip(sentences, outputs):
        target = mirror_words(sentence)
        exact += output == target
        target_words, output_words = target.split(" "), output.split(" ")
        words += len(target_words)
        words_right += sum(a == b for a, b in zip(target_words, output_words))
        chars += len(target)
        chars_right += sum(a == b for a, b in zip(target, output))
    n = len(sentences)
    return {"sentences": n, "exact_accuracy": exact / n, "word_accuracy": words_right / words,
            "char_accuracy": chars_right / chars, "target_words": words, "target_chars": chars}


@torch.no_grad()
def teacher_forced_nats(model: MirrorModel, vocab: Vocab, sentences: list[str],
                        batch_size: int = 256) -> tuple[float, int]:
    """Summed cross entropy (nats) of the mirrored characters and EOS given the truth so far, and their count."""
    model.eval()
    total, count = 0.0, 0
    order = sorted(sentences, key=len)
    for start in range(0, len(order), batch_size):
        batch = make_batch(vocab, order[start:start + batch_size])
        logits = model(batch["source"], batch["lengths"], batch["decoder_input"])  # (B, T+1, V)
        total += F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten(), ignore_index=PAD,
                                 reduction="sum").item()
        count += int((batch["target"] != PAD).sum())
    return total, count


# ------------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class MirrorTrainConfig:
    """What to train on and how."""

    corpus: str = "bible"          # "bible", "text8", or a path (e.g. ../shared/data/wiki8.txt.xz)
    alphabet: str = "raw"          # "raw" or "text8"
    max_words: int = 5             # training sentences have 1..max_words words, drawn per batch
    batch_size: int = 128
    steps: int = 3000
    learning_rate: float = 3e-3    # Adam
    lr_decay: float = 0.3          # multiplied by lr_decay every lr_decay_every steps
    lr_decay_every: int = 1000
    clip_grad_norm: float = 1.0    # global gradient norm; 0 disables clipping
    valid_every: int = 250
    valid_sentences: int = 300     # held-out sentences for validation, spread over 1..max_words words
    checkpoint_every: int = 250
    time_limit_minutes: float = 0.0  # stop (validate, checkpoint) once the run has taken this long; 0: no limit
    seed: int = 0

    def __post_init__(self):
        for name in ("max_words", "batch_size", "steps", "lr_decay_every", "valid_every", "valid_sentences",
                     "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_optimization(self)
        if not self.time_limit_minutes >= 0:
            raise ValueError(f"time_limit_minutes must be >= 0 (0: no limit), got {self.time_limit_minutes}")


def make_mirror_configs(overrides: dict) -> tuple[MirrorModelConfig, MirrorTrainConfig]:
    """Defaults, then overrides (field name -> value, None meaning 'not given')."""
    model_given, train_given = split_overrides(overrides, MirrorModelConfig, MirrorTrainConfig,
                                               "mirror configuration")
    return MirrorModelConfig(**model_given), MirrorTrainConfig(**train_given)


class MirrorMetricsLog(MetricsLog):
    """metrics.csv of a mirror run (bits per output character, so train.plot_learning_curve draws it)."""

    COLUMNS = ("step", "learning_rate", "train_nats_per_char", "train_bits_per_char", "valid_bits_per_char",
               "valid_exact_accuracy", "valid_word_accuracy", "valid_char_accuracy", "sentences_per_second",
               "chars_per_second", "elapsed_seconds")


class MirrorRun:
    """A training run's state between steps; what a checkpoint saves and restores."""

    def __init__(self, model_cfg: MirrorModelConfig, cfg: MirrorTrainConfig, vocab: Vocab, ids: np.ndarray):
        self.model_cfg, self.cfg, self.vocab = model_cfg, cfg, vocab
        parts = split_ids(ids, "standard")
        self.train_windows = SentenceWindows(parts["train"], vocab)
        valid = SentenceWindows(parts["valid"], vocab)
        lengths = list(range(1, cfg.max_words + 1))
        per_length = max(1, cfg.valid_sentences // len(lengths))
        self.valid = [s for group in held_out_sentences(valid, lengths, per_length, cfg.seed + 1).values()
                      for s in group]
        torch.manual_seed(cfg.seed)
        self.model = MirrorModel(len(vocab), model_cfg)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate)
        self.data_generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    def next_sentences(self) -> list[str]:
        """One training batch: a word count drawn from 1..max_words, then batch_size windows of it."""
        words = int(torch.randint(1, self.cfg.max_words + 1, (1,), generator=self.data_generator))
        return self.train_windows.sample(words, self.cfg.batch_size, self.data_generator)

    def checkpoint_payload(self) -> dict:
        return {"kind": KIND, "model_config": asdict(self.model_cfg), "train_config": asdict(self.cfg),
                "vocab": self.vocab.to_list(), "lstmlm_version": __version__,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                "data": {"generator": self.data_generator.get_state()}, "rng": {"torch": torch.get_rng_state()}}

    def restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.data_generator.set_state(payload["data"]["generator"])
        self.step = int(payload["step"])
        torch.set_rng_state(payload["rng"]["torch"])


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def start_mirror_training(model_cfg: MirrorModelConfig, cfg: MirrorTrainConfig, out_dir: str | os.PathLike,
                          progress: bool = True) -> dict:
    """Train a new mirror model into out_dir (which must not already hold a run). Returns the summary."""
    out = Path(out_dir).expanduser()
    if (out / CHECKPOINT_NAME).exists():
        raise FileExistsError(f"{out} already holds a run; continue it with `lstmlm mirror train --resume {out}` "
                              f"or choose another --out")
    t0 = time.perf_counter()
    cfg = replace(cfg, corpus=canonical_corpus(cfg.corpus))
    vocab, ids = corpus_ids(cfg.corpus, cfg.alphabet)
    run = MirrorRun(model_cfg, cfg, vocab, ids)
    out.mkdir(parents=True, exist_ok=True)
    parameters = sum(p.numel() for p in run.model.parameters())
    _write_json(out / "config.json", {"kind": KIND, "model": asdict(model_cfg), "train": asdict(cfg),
                                      "vocab": vocab.to_list(), "parameters": parameters,
                                      "lstmlm_version": __version__, "torch_version": torch.__version__})
    logger.info("mirror model: %d parameters; vocabulary: %d symbols; %d training words", parameters, len(vocab),
                run.train_windows.num_words)
    return _train_loop(run, out, progress, t0)


def resume_mirror_training(run_dir: str | os.PathLike, steps: int | None = None, progress: bool = True) -> dict:
    """Continue the mirror run in run_dir from its latest checkpoint (optionally to a new total of steps)."""
    t0 = time.perf_counter()
    out = Path(run_dir).expanduser()
    payload = load_mirror_checkpoint(out)
    out = out if out.is_dir() else out.parent
    cfg = MirrorTrainConfig(**payload["train_config"])
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    vocab = Vocab(payload["vocab"])
    _, ids = corpus_ids(cfg.corpus, cfg.alphabet, vocab)
    run = MirrorRun(MirrorModelConfig(**payload["model_config"]), cfg, vocab, ids)
    run.restore(payload)
    logger.info("resuming %s at step %d of %d", out, run.step, cfg.steps)
    return _train_loop(run, out, progress, t0)


def _train_loop(run: MirrorRun, out: Path, progress: bool, t0: float) -> dict:
    from tqdm import tqdm

    cfg, model, optimizer = run.cfg, run.model, run.optimizer
    metrics = MirrorMetricsLog(out / "metrics.csv", keep_up_to_step=run.step)
    nats_sum, chars_sum, sentences_sum, train_seconds = 0.0, 0, 0, 0.0
    last = None
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not progress, unit="step", dynamic_ncols=True,
               desc="mirror")
    deadline = t0 + 60 * cfg.time_limit_minutes if cfg.time_limit_minutes else math.inf
    while run.step < cfg.steps:
        tick = time.perf_counter()
        lr = cfg.learning_rate * cfg.lr_decay ** (run.step // cfg.lr_decay_every)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = make_batch(run.vocab, run.next_sentences())
        model.train()
        logits = model(batch["source"], batch["lengths"], batch["decoder_input"])  # (B, T+1, V)
        chars = int((batch["target"] != PAD).sum())
        loss = F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten(), ignore_index=PAD)  # nats per char
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bar.close()
            raise FloatingPointError(f"the training loss became {loss_value} at step {run.step + 1}; training "
                                     f"stopped and the last good checkpoint in {out} is kept (try a lower "
                                     f"--learning-rate or --clip-grad-norm)")
        optimizer.step()
        run.step += 1
        train_seconds += time.perf_counter() - tick
        nats_sum += loss_value * chars
        chars_sum += chars
        sentences_sum += len(batch["lengths"])
        bar.update(1)
        out_of_time = time.perf_counter() >= deadline
        if out_of_time:
            (bar.write if progress else logger.info)(f"time limit of {cfg.time_limit_minutes:g} minutes reached "
                                                     f"at step {run.step}")
        if run.step % 10 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}", sent_s=f"{sentences_sum / max(train_seconds, 1e-9):,.0f}",
                            refresh=False)

        if run.step % cfg.valid_every == 0 or run.step == cfg.steps or out_of_time:
            last = validate(run)
            train_nats = nats_sum / chars_sum
            row = {"step": run.step, "learning_rate": lr, "train_nats_per_char": train_nats,
                   "train_bits_per_char": train_nats / math.log(2), "valid_bits_per_char": last["bits_per_char"],
                   "valid_exact_accuracy": last["exact_accuracy"], "valid_word_accuracy": last["word_accuracy"],
                   "valid_char_accuracy": last["char_accuracy"],
                   "sentences_per_second": sentences_sum / max(train_seconds, 1e-9),
                   "chars_per_second": chars_sum / max(train_seconds, 1e-9),
                   "elapsed_seconds": time.perf_counter() - t0}
            metrics.append(row)
            message = (f"step {run.step}: train {row['train_bits_per_char']:.4f} bits/char, valid "
                       f"{last['bits_per_char']:.4f} bits/char, exact {last['exact_accuracy']:.2%}, "
                       f"words {last['word_accuracy']:.2%}, chars {last['char_accuracy']:.2%}, lr {lr:g}, "
                       f"{row['sentences_per_second']:,.0f} sentences/s")
            (bar.write if progress else logger.info)(message)
            nats_sum, chars_sum, sentences_sum, train_seconds = 0.0, 0, 0, 0.0

        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps or out_of_time:
            save_checkpoint(out / CHECKPOINT_NAME, run.checkpoint_payload())
        if out_of_time:
            break
    bar.close()
    if last is None:
        last = validate(run)
    summary = {"steps": run.step, "valid_bits_per_char": last["bits_per_char"],
               "valid_exact_accuracy": last["exact_accuracy"], "valid_word_accuracy": last["word_accuracy"],
               "valid_char_accuracy": last["char_accuracy"], "valid_sentences": last["sentences"],
               "train_sentences": run.step * cfg.batch_size, "wall_seconds": time.perf_counter() - t0,
               "examples": [{"source": s, "output": o} for s, o in zip(last["examples"], last["outputs"])],
               "run_dir": str(out)}
    _write_json(out / "summary.json", summary)
    if metrics.rows:
        plot_learning_curve(metrics.rows, out / "learning_curve.png")
    return summary


def validate(run: MirrorRun) -> dict:
    """Teacher-forced bits per character and greedy accuracies on the run's validation sentences."""
    nats, chars = teacher_forced_nats(run.model, run.vocab, run.valid)
    outputs = decode(run.model, run.vocab, run.valid)
    result = score(run.valid, outputs)
    longest = sorted(range(len(run.valid)), key=lambda i: -len(run.valid[i]))[:3]
    return {**result, "bits_per_char": nats / chars / math.log(2),
            "examples": [run.valid[i] for i in longest], "outputs": [outputs[i] for i in longest]}


# ---------------------------------------------------------------------------------- using a trained model

def load_mirror_checkpoint(run: str | os.PathLike) -> dict:
    payload = load_checkpoint(run)
    if payload.get("kind") != KIND:
        raise ValueError(f"{run} holds a language model, not a mirror model; train one with "
                         f"`lstmlm mirror train --out RUN_DIR`")
    return payload


def load_mirror_model(run: str | os.PathLike) -> tuple[dict, MirrorModel, Vocab]:
    """The checkpoint payload, its model (eval mode) and vocabulary."""
    payload = load_mirror_checkpoint(run)
    vocab = Vocab(payload["vocab"])
    model = MirrorModel(len(vocab), MirrorModelConfig(**payload["model_config"]))
    model.load_state_dict(payload["model"])
    return payload, model.eval(), vocab


def mirror_lines(run: str | os.PathLike, lines: list[str], beam: int = 1) -> list[str]:
    """Each line mirrored by the model in run (white space normalised first); blank lines stay blank."""
    _, model, vocab = load_mirror_model(run)
    texts = [normalize_spaces(line) for line in lines]
    unknown = vocab.unknown("".join(texts))
    if unknown:
        raise ValueError(f"the text has characters the model never saw: {describe_chars(unknown)}; the model "
                         f"in {run} knows only {''.join(vocab.symbols)!r}")
    filled = [i for i, t in enumerate(texts) if t]
    outputs = decode(model, vocab, [texts[i] for i in filled], beam=beam)
    result = [""] * len(texts)
    for i, out in zip(filled, outputs):
        result[i] = out
    return result


def evaluate_mirror(run: str | os.PathLike, corpus: str | None = None, lengths: list[int] | None = None,
                    sentences: int = 200, beams: tuple[int, ...] = (1,), split: str = "test",
                    seed: int = 1234, batch_size: int = 256) -> dict:
    """Accuracies on held-out windows of each length (words) in lengths, for each beam width.

    The windows come from the split part ("valid" or "test") of corpus (default: the training corpus),
    `sentences` per length, the same for the same seed. Returns {"rows": [...], ...}, one row per
    (beam, length) with exact, word and char accuracy.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    if not isinstance(sentences, int) or sentences <= 0:
        raise ValueError(f"sentences must be a positive integer, got {sentences!r}")
    payload, model, vocab = load_mirror_model(run)
    cfg = MirrorTrainConfig(**payload["train_config"])
    corpus = canonical_corpus(corpus) if corpus else cfg.corpus
    if lengths is None:
        N = cfg.max_words
        lengths = sorted(set(range(1, N + 1)) | {2 * N, 4 * N})
    if any(not isinstance(n, int) or n <= 0 for n in lengths):
        raise ValueError(f"lengths must be positive word counts, got {lengths}")
    _, ids = corpus_ids(corpus, cfg.alphabet, vocab)
    windows = SentenceWindows(split_ids(ids, "standard")[split], vocab)
    held_out = held_out_sentences(windows, lengths, sentences, seed)
    rows = []
    for beam in beams:
        for n in lengths:
            tick = time.perf_counter()
            outputs = decode(model, vocab, held_out[n], beam=beam, batch_size=batch_size)
            result = score(held_out[n], outputs)
            wrong = [(s, o) for s, o in zip(held_out[n], outputs) if o != mirror_words(s)][:2]
            rows.append({"beam": beam, "words": n, **result, "seconds": time.perf_counter() - tick,
                         "errors": [{"source": s, "output": o} for s, o in wrong]})
            logger.info("beam %d, %d words: exact %.2f%%, words %.2f%%, chars %.2f%%", beam, n,
                        100 * result["exact_accuracy"], 100 * result["word_accuracy"], 100 * result["char_accuracy"])
    return {"run": str(run), "corpus": corpus, "split": split, "step": payload["step"],
            "trained_max_words": cfg.max_words, "seed": seed, "rows": rows}


def format_table(result: dict) -> str:
    """The evaluation as a Markdown table, one row per beam width and sentence length."""
    lines = [f"held-out {result['split']} sentences of {result['corpus']} (trained on 1..{result['trained_max_words']} "
             f"words, step {result['step']})", "",
             "| decoding | words | sentences | exact-sentence | per-word | per-char |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        decoding = "greedy" if row["beam"] == 1 else f"beam {row['beam']}"
        lines.append(f"| {decoding} | {row['words']} | {row['sentences']} | {row['exact_accuracy']:.2%} | "
                     f"{row['word_accuracy']:.2%} | {row['char_accuracy']:.2%} |")
    return "\n".join(lines)
