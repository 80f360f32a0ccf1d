"""Command line: argument parsing only; the work is done by train, evaluate and sample."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields

import torch

from . import __version__, mirror
from .checkpoint import load_model
from .data import load_ids, split_ids
from .evaluate import evaluate
from .kernels import KERNELS
from .sample import sample_text
from .train import PRESETS, TrainConfig, canonical_corpus, make_configs, resume_training, start_training

# Flags that set ModelConfig / TrainConfig fields; their dest is the field's name.
_TRAIN_FLAGS = [
    ("--corpus", str, "'bible' (embedded, default), 'text8' (downloaded and cached), or a UTF-8 file "
                      "(.txt/.gz/.xz/.bz2/.zip) or directory"),
    ("--alphabet", str, "'raw' (the text's own characters) or 'text8' (a-z and space, digits spelled out)"),
    ("--split", str, "'standard' (90/5/5%%) or 'assignment' (first 1,000 characters validate)"),
    ("--tokens", str, "'char', or 'bigram': non-overlapping character pairs (27² = 729 tokens for text8)"),
    ("--input", str, "'onehot', 'embedding', or 'bigram' (an embedding of the last two characters)"),
    ("--embedding-size", int, "embedding width when --input embedding or bigram"),
    ("--hidden-size", int, "LSTM cells per layer"),
    ("--num-layers", int, "stacked LSTM layers"),
    ("--proj-size", int, "recurrent projection size (0: none)"),
    ("--dropout", float, "dropout on non-recurrent connections (Zaremba et al. 2014), in [0, 1)"),
    ("--embedding-dropout", float, "drop whole embedding rows, in [0, 1)"),
    ("--weight-drop", float, "DropConnect on the recurrent weights, one mask per chunk, in [0, 1)"),
    ("--zoneout-cell", float, "zoneout probability for the cell state (runs the reference recurrence)"),
    ("--zoneout-hidden", float, "zoneout probability for the hidden state (runs the reference recurrence)"),
    ("--kernel", str, f"LSTM implementation, one of {', '.join(KERNELS)}: 'auto' picks the fastest for the device"),
    ("--init", str, "'torch' or 'notebook' (the assignment's truncated normal)"),
    ("--batch-size", int, "parallel streams per step"),
    ("--num-unrollings", int, "time steps per truncated-BPTT chunk"),
    ("--steps", int, "total optimizer steps"),
    ("--optimizer", str, "'sgd' or 'adam'"),
    ("--learning-rate", float, "initial learning rate"),
    ("--lr-decay", float, "multiply the learning rate by this every --lr-decay-every steps"),
    ("--lr-decay-every", int, "steps between learning-rate decays"),
    ("--clip-grad-norm", float, "clip gradients to this global norm (0: off)"),
    ("--weight-decay", float, "L2 weight decay"),
    ("--valid-every", int, "steps between validations"),
    ("--valid-chars", int, "validate on the first N characters of the split during training (0: all)"),
    ("--valid-batch-size", int, "parallel streams for validation"),
    ("--sample-every", int, "steps between samples (0: none)"),
    ("--sample-count", int, "samples each time"),
    ("--sample-length", int, "characters per sample"),
    ("--checkpoint-every", int, "steps between checkpoints"),
    ("--seed", int, "random seed"),
    ("--max-pairs", int, "bigram tokens: all pairs up to this many, else the pairs seen in training plus "
                         "one fallback per first character"),
    ("--max-seconds", float, "stop after this much training time, in seconds (0: no limit)"),
    ("--precision", str, "'fp32', 'tf32' (CUDA matmuls), 'bf16' or 'fp16' (autocast, a gradient scaler for fp16; "
                         "the LSTM cell state stays fp32)"),
]


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, like every other lstmlm error (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"lstmlm: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lstmlm", description="Character-level LSTMP language models.")
    parser.add_argument("--version", action="version", version=f"lstmlm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model (or --resume one)",
                                description="Train a language model; presets give defaults, flags override them.")
    train.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (default: quickstart; see README)")
    train.add_argument("--out", help="run directory for config, metrics and checkpoints "
                                     "(default: runs/<preset>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    for flag, kind, text in _TRAIN_FLAGS:
        train.add_argument(flag, type=kind, help=text)
    train.add_argument("--peepholes", action=argparse.BooleanOptionalAction, default=None,
                       help="peephole connections from the cell to the gates")
    train.add_argument("--locked-dropout", action=argparse.BooleanOptionalAction, default=None,
                       help="variational dropout: one --dropout mask per sequence, the same at every step")
    train.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                       help="capture the whole training step (forward, backward, clipping, update) in a CUDA graph "
                            "after 3 eager steps and replay it (one CUDA GPU, not with --precision fp16)")
    _add_common(train)

    ev = commands.add_parser("eval", help="bits per character of a trained model on a whole split")
    ev.add_argument("run", metavar="RUN_DIR", help="run directory or checkpoint file")
    ev.add_argument("--corpus", help="corpus to evaluate on (default: the one the model was trained on)")
    ev.add_argument("--split", choices=("valid", "test", "all"), help="default: test, or valid for the "
                                                                      "assignment split, which has no test part")
    ev.add_argument("--batch-size", type=int, default=64, help="parallel streams")
    ev.add_argument("--num-unrollings", type=int, default=100, help="time steps per chunk")
    _add_common(ev)

    sm = commands.add_parser("sample", help="generate text from a trained model")
    sm.add_argument("run", metavar="RUN_DIR", help="run directory or checkpoint file")
    sm.add_argument("--prime", default="", help="text to start from (default: one random character)")
    sm.add_argument("--length", type=int, default=500, help="characters to generate")
    sm.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (0: greedy)")
    sm.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest characters (0: all)")
    sm.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same text")
    _add_common(sm)

    bench = commands.add_parser("bench", help="training speed and activation memory of the LSTM kernels vs torch.nn.LSTM",
                                description="Train-step chars/s of each implementation at each size, with the ratio "
                                            "to torch.nn.LSTM measured in the same run (see lstmlm.bench).")
    bench.add_argument("--sizes", nargs="+", metavar="H,B,T[,E[,P]]", help="hidden, batch, unrollings, embedding "
                       "width (0: one-hot), projection (default: H/4) (default on the CPU: H64 B64 T10 ... H1024 B128 "
                       "T100; on CUDA: H64, H256, H1024, H2048 x B16, B64, B256, B1024, T50, embedding 128)")
    bench.add_argument("--kernel", "--implementations", dest="implementations", nargs="+", metavar="NAME",
                       help="implementations to time: nn.LSTM, reference, auto or a kernel of lstmlm.kernels, each also "
                            "with +lstmp (peepholes and projection; nn.LSTM+proj for torch's) (default: nn.LSTM, "
                            "reference and the kernels that run on the device, with their +lstmp twins)")
    bench.add_argument("--seconds", type=float, default=3.0, help="timed seconds per implementation and size")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the best counts")
    bench.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    bench.add_argument("--precision", default="fp32", help="'fp32', 'tf32' (TF32 matmul and cuDNN products, CUDA) "
                                                           "or 'bf16' (autocast)")
    bench.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                       help="capture each implementation's training step in a CUDA graph and time its replays "
                            "(default: on for CUDA)")
    bench.add_argument("--out", help="directory for bench.json and bench.csv (rewritten after every row)")
    _add_common(bench)

    # listed for --help only: parse_args hands `lstmlm mirror ...` to build_mirror_parsers
    commands.add_parser("mirror", help="mirror every word with a seq2seq LSTM: `lstmlm mirror train|eval ...` "
                                       "or `lstmlm mirror RUN_DIR TEXT`")
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")


def cmd_train(args: argparse.Namespace) -> int:
    progress = not args.quiet
    if args.resume:
        given = [flag for flag, _, _ in _TRAIN_FLAGS if flag != "--steps" and getattr(args, _dest(flag)) is not None]
        given += ["--preset"] * (args.preset is not None) + ["--out"] * (args.out is not None)
        given += ["--peepholes"] * (args.peepholes is not None) + ["--locked-dropout"] * (args.locked_dropout is not None)
        given += ["--cuda-graphs"] * (args.cuda_graphs is not None)
        if given:
            raise ValueError(f"--resume continues a run with its saved configuration; drop {', '.join(given)} "
                             f"(only --steps may change)")
        summary = resume_training(args.resume, steps=args.steps, progress=progress)
    else:
        overrides = {_dest(flag): getattr(args, _dest(flag)) for flag, _, _ in _TRAIN_FLAGS}
        overrides["peepholes"] = args.peepholes
        overrides["locked_dropout"] = args.locked_dropout
        overrides["cuda_graphs"] = args.cuda_graphs
        model_cfg, train_cfg = make_configs(args.preset or "quickstart", overrides)
        out = args.out
        if out is None:
            import time
            out = f"runs/{args.preset or 'quickstart'}-{time.strftime('%Y%m%d-%H%M%S')}"
        summary = start_training(model_cfg, train_cfg, out, progress=progress)
    if not summary:  # a rank other than 0 of a distributed run: rank 0 reports
        return 0
    print(f"run directory: {summary['run_dir']}")
    print(f"validation: {summary['valid_bits_per_char']:.4f} bits per character, perplexity "
          f"{summary['valid_perplexity']:.3f}, over {summary['valid_chars']:,} characters")
    print(f"trained {summary['steps']:,} steps, {summary['train_chars']:,} characters, "
          f"in {summary['wall_seconds']:.1f} s wall time")
    print(f"sample: {summary['sample']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    for flag in ("--batch-size", "--num-unrollings"):
        if getattr(args, _dest(flag)) <= 0:
            raise ValueError(f"{flag} must be a positive integer, got {getattr(args, _dest(flag))}")
    payload, model, vocab, pairs = load_model(args.run)
    cfg = TrainConfig(**payload["train_config"])
    corpus = canonical_corpus(args.corpus) if args.corpus else cfg.corpus
    try:
        _, ids = load_ids(corpus, cfg.alphabet, vocab)
    except ValueError as error:
        if "outside the vocabulary" not in str(error):
            raise
        raise ValueError(f"{error}; the model {args.run} was trained on {cfg.corpus} with --alphabet "
                         f"{cfg.alphabet} and knows only {''.join(vocab.symbols)!r}") from None
    split = args.split or ("valid" if cfg.split == "assignment" else "test")
    part = ids if split == "all" else split_ids(ids, cfg.split)[split]
    if len(part) < 3:
        raise ValueError(f"the {split} part of {corpus} ({cfg.split} split) is empty; choose --split valid or all")
    result = evaluate(model, part, args.batch_size, args.num_unrollings, pairs)
    print(json.dumps({**result, "split": split, "corpus": corpus, "step": payload["step"]}))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    _, model, vocab, pairs = load_model(args.run)
    out = sys.stdout
    chars = sample_text(model, vocab, args.prime, args.length, args.temperature, args.top_k, args.seed, pairs)
    first = next(chars, "")  # checks the options and the prime before anything is printed
    out.write(args.prime + first)
    for char in chars:
        out.write(char)
    out.write("\n")
    return 0


# `lstmlm mirror ...` (mirror.py): the first word after `mirror` picks train, eval, or mirroring text with RUN_DIR.
_MIRROR_FLAGS = [
    ("--corpus", str, "'bible' (embedded, default), 'text8', or a UTF-8 file or directory, e.g. "
                      "../shared/data/wiki8.txt.xz"),
    ("--alphabet", str, "'raw' (the text's own characters) or 'text8' (a-z and space)"),
    ("--max-words", int, "training sentences have 1..N words (default 5)"),
    ("--embedding-size", int, "character embedding width"),
    ("--encoder-size", int, "LSTM cells per encoder direction"),
    ("--decoder-size", int, "decoder LSTM cells"),
    ("--attention-size", int, "width of the additive attention"),
    ("--location-filters", int, "channels of the convolution over the previous alignment (0: content-only attention)"),
    ("--location-kernel", int, "odd width of that convolution"),
    ("--batch-size", int, "sentences per step"),
    ("--steps", int, "total optimizer steps"),
    ("--learning-rate", float, "Adam's initial learning rate"),
    ("--lr-decay", float, "multiply the learning rate by this every --lr-decay-every steps"),
    ("--lr-decay-every", int, "steps between learning-rate decays"),
    ("--clip-grad-norm", float, "clip gradients to this global norm (0: off)"),
    ("--valid-every", int, "steps between validations"),
    ("--valid-sentences", int, "held-out sentences for validation during training"),
    ("--checkpoint-every", int, "steps between checkpoints"),
    ("--time-limit-minutes", float, "stop, validate and checkpoint once the command has run this long (0: no limit)"),
    ("--seed", int, "random seed"),
]


def build_mirror_parsers() -> dict[str, argparse.ArgumentParser]:
    """The parsers of `lstmlm mirror train`, `lstmlm mirror eval` and `lstmlm mirror RUN_DIR TEXT...`."""
    train = _Parser(prog="lstmlm mirror train", description="Train a sequence-to-sequence LSTM "
                    "that mirrors every word (pairs made on the fly from --corpus).")
    train.add_argument("--out", help="run directory (default: runs/mirror-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    for flag, kind, text in _MIRROR_FLAGS:
        train.add_argument(flag, type=kind, help=text)
    train.add_argument("--peepholes", action=argparse.BooleanOptionalAction, default=None,
                       help="peephole connections in every LSTM")
    _add_common(train)

    ev = _Parser(prog="lstmlm mirror eval", description="Exact-sentence, per-word and per-character "
                 "accuracy on held-out sentences, by length in words.")
    ev.add_argument("run", metavar="RUN_DIR", help="run directory or checkpoint file")
    ev.add_argument("--corpus", help="corpus to draw sentences from (default: the training corpus)")
    ev.add_argument("--split", choices=("valid", "test"), default="test", help="part of the corpus (default: test)")
    ev.add_argument("--lengths", help="comma-separated sentence lengths in words (default: 1..N, 2N, 4N for a "
                                      "model trained on at most N words)")
    ev.add_argument("--sentences", type=int, default=200, help="sentences per length")
    ev.add_argument("--beam", type=int, nargs="+", default=[1], metavar="K",
                    help="beam widths to compare on the same sentences (1: greedy), e.g. --beam 1 5")
    ev.add_argument("--seed", type=int, default=1234, help="which held-out sentences")
    ev.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    _add_common(ev)

    use = _Parser(prog="lstmlm mirror", description="Mirror every word of TEXT (or of each line "
                  "of standard input) with a trained model. Also: `lstmlm mirror train ...` and "
                  "`lstmlm mirror eval RUN_DIR`, each with --help.")
    use.add_argument("run", metavar="RUN_DIR", help="run directory or checkpoint file from `lstmlm mirror train`")
    use.add_argument("text", metavar="TEXT", nargs="*", help="one sentence (its words may be separate arguments); "
                                                              "none: mirror each line of standard input")
    use.add_argument("--beam", type=int, default=1, metavar="K", help="beam search with K hypotheses (1: greedy)")
    _add_common(use)
    return {"train": train, "eval": ev, "text": use}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The main parser's arguments, or for `lstmlm mirror ...` those of the mirror parser its next word picks."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["mirror"]:
        return build_parser().parse_args(argv)
    parsers = build_mirror_parsers()
    which = argv[1] if argv[1:2] in (["train"], ["eval"]) else "text"
    if which == "text":  # options may come between the words of TEXT
        args = parsers[which].parse_intermixed_args(argv[1:])
    else:
        args = parsers[which].parse_args(argv[2:])
    args.command = f"mirror {which}"
    return args


def cmd_mirror_train(args: argparse.Namespace) -> int:
    progress = not args.quiet
    if args.resume:
        given = [flag for flag, _, _ in _MIRROR_FLAGS if flag != "--steps" and getattr(args, _dest(flag)) is not None]
        given += ["--out"] * (args.out is not None) + ["--peepholes"] * (args.peepholes is not None)
        if given:
            raise ValueError(f"--resume continues a run with its saved configuration; drop {', '.join(given)} "
                             f"(only --steps may change)")
        summary = mirror.resume_mirror_training(args.resume, steps=args.steps, progress=progress)
    else:
        overrides = {_dest(flag): getattr(args, _dest(flag)) for flag, _, _ in _MIRROR_FLAGS}
        overrides["peepholes"] = args.peepholes
        model_cfg, train_cfg = mirror.make_mirror_configs(overrides)
        out = args.out
        if out is None:
            import time
            out = f"runs/mirror-{time.strftime('%Y%m%d-%H%M%S')}"
        summary = mirror.start_mirror_training(model_cfg, train_cfg, out, progress=progress)
    print(f"run directory: {summary['run_dir']}")
    print(f"validation ({summary['valid_sentences']} sentences): exact-sentence {summary['valid_exact_accuracy']:.2%}, "
          f"per-word {summary['valid_word_accuracy']:.2%}, per-char {summary['valid_char_accuracy']:.2%}, "
          f"{summary['valid_bits_per_char']:.4f} bits per character")
    print(f"trained {summary['steps']:,} steps, {summary['train_sentences']:,} sentences, "
          f"in {summary['wall_seconds']:.1f} s wall time")
    for example in summary["examples"]:
        print(f"  {example['source']!r} -> {example['output']!r}")
    return 0


def cmd_mirror_eval(args: argparse.Namespace) -> int:
    try:
        lengths = [int(n) for n in args.lengths.split(",")] if args.lengths else None
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated word counts such as 1,2,5,10, got {args.lengths!r}") from None
    if lengths is not None and min(lengths) < 1:
        raise ValueError(f"--lengths must be word counts >= 1, got {args.lengths!r}")
    if any(k < 1 for k in args.beam):
        raise ValueError(f"--beam must be >= 1 (1 is greedy), got {' '.join(map(str, args.beam))}")
    if args.sentences < 1:
        raise ValueError(f"--sentences must be >= 1, got {args.sentences}")
    result = mirror.evaluate_mirror(args.run, args.corpus, lengths, args.sentences, tuple(args.beam), args.split,
                                    args.seed)
    print(mirror.format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def cmd_mirror_text(args: argparse.Namespace) -> int:
    if args.beam < 1:
        raise ValueError(f"--beam must be >= 1 (1 is greedy), got {args.beam}")
    lines = [" ".join(args.text)] if args.text else sys.stdin.read().splitlines()
    for line in mirror.mirror_lines(args.run, lines, beam=args.beam):
        print(line)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    sizes = tuple(bench.parse_size(s) for s in args.sizes) if args.sizes else None
    implementations = tuple(args.implementations) if args.implementations else None
    for name in implementations or ():
        if name not in bench.all_implementations():
            raise ValueError(f"--kernel: unknown implementation {name!r}; choose from {', '.join(bench.all_implementations())}")
    if args.seconds <= 0 or args.rounds <= 0:
        raise ValueError(f"--seconds and --rounds must be positive, got {args.seconds} and {args.rounds}")
    bench.check_options(args.device, args.precision, args.cuda_graphs)
    env = bench.environment(args.device, precision=args.precision, cuda_graphs=args.cuda_graphs)
    print(bench.format_table([], env))
    rows = []

    def keep(row: dict) -> None:  # the files stay current, so a sweep cut short keeps what it measured
        rows.append(row)
        if args.out:
            bench.write_results(rows, env, args.out)

    results = bench.run_benchmark(sizes, implementations, min_seconds=args.seconds, rounds=args.rounds,
                                  device=args.device, precision=args.precision, cuda_graphs=args.cuda_graphs,
                                  progress=None if args.quiet else print, on_row=keep)
    cuda = env["device"].startswith("cuda")
    if args.quiet:
        print("\n".join(bench.format_row(r, cuda) for r in results))
    for row in results:
        if row["note"]:
            print(f"note: {row['size']} {row['implementation']}: {row['note']}")
    if args.out:
        for path in bench.write_results(results, env, args.out):
            print(f"wrote {path}")
    failed = [f"{r['size']} {r['implementation']} ({r['error']})" for r in results if r["error"]]
    if failed:
        raise ValueError(f"{len(failed)} of {len(results)} measurements failed: {'; '.join(failed)[:1000]}")
    return 0


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    if args.threads < 0:
        print(f"lstmlm: error: --threads must be >= 0, got {args.threads}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    command = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "bench": cmd_bench, "mirror train": cmd_mirror_train,
               "mirror eval": cmd_mirror_eval, "mirror text": cmd_mirror_text}[args.command]
    try:
        return command(args)
    except (ValueError, OSError, ImportError, FloatingPointError) as error:
        print(f"lstmlm: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lstmlm: interrupted; a run continues from its last checkpoint with `lstmlm train --resume RUN_DIR`",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
