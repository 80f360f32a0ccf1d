"""Checkpoints: plain data (tensors, numbers, strings) written atomically, loaded without running code.

A checkpoint is one torch.save file read back with torch.load(weights_only=True), which refuses
anything but tensors and plain containers, so a crafted pickle cannot execute code. It carries the
configs, the vocabulary, model and optimizer state, the step, the data cursors, the carried LSTM
state and the RNG state: enough to continue a run exactly.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

FORMAT = "lstmlm-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(run: str | os.PathLike) -> Path:
    """A run directory's latest checkpoint, or the file itself when given a file."""
    path = Path(run).expanduser()
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write payload to path atomically: a temporary file beside it, fsync, then rename over.

    A crash or a full disk mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            payload = {"format": FORMAT, "version": VERSION, **payload}
            torch.save({**payload, "sha256": content_digest(payload)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"could not write checkpoint {path} ({error.strerror}); "
                                       f"the previous checkpoint, if any, is unchanged; free space and continue with "
                                       f"`lstmlm train --resume {path.parent}`") from error
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by save_checkpoint; clear errors for missing, corrupt or unsafe files."""
    path = checkpoint_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: pass a run directory made by `lstmlm train --out` "
                                f"or a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns before refusing a foreign pickle: the error says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message advises turning the safe loader off; never repeat that, name what was asked.
        called = re.search(r"GLOBAL (\S+)", str(error))
        with open(path, "rb") as f:
            is_pickle = f.read(1) == b"\x80"  # the PROTO opcode a pickle starts with
        if called or is_pickle:
            what = f"it asks to call {called.group(1)}" if called else "it is a pickle of more than tensors and plain data"
            raise ValueError(f"refusing to load {path}: {what}, which could run code; an lstmlm checkpoint holds only "
                             f"tensors and plain data, so this file was not written by lstmlm or was altered") from None
        raise ValueError(f"checkpoint {path} is truncated or corrupt (not a readable checkpoint); resume from an "
                         f"earlier checkpoint or retrain") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"checkpoint {path} is truncated or corrupt ({str(error).splitlines()[0][:200]}); "
                         f"resume from an earlier checkpoint or retrain") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lstmlm checkpoint")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} is checkpoint format version {payload.get('version')}, "
                         f"this lstmlm reads version {VERSION}")
    digest = payload.pop("sha256", None)  # absent from checkpoints written before it was added
    if digest is not None and digest != content_digest(payload):
        raise ValueError(f"checkpoint {path} is corrupt: its content does not match the SHA-256 written with it; "
                         f"resume from an earlier checkpoint or retrain")
    return payload


def content_digest(payload: dict) -> str:
    """SHA-256 of a checkpoint's content: every tensor's dtype, shape and bytes and every plain value,
    in order. torch.load does not check the zip's CRCs, so this is what catches flipped bytes."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, dict):
            digest.update(f"dict {len(value)};".encode())
            for key, item in value.items():
                feed(key)
                feed(item)
        elif isinstance(value, (list, tuple)):
            digest.update(f"list {len(value)};".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"{type(value).__name__} {value!r};".encode())

    feed(payload)
    return digest.hexdigest()


def load_model(run: str | os.PathLike):
    """A trained model from a run directory or checkpoint file, in eval mode.

    Returns (payload, model, vocab, pairs): the checkpoint's plain data, the LanguageModel, its
    character Vocab, and its PairVocab for bigram-token models (else None).
    """
    from . import __version__
    from .model import LanguageModel, ModelConfig
    from .vocab import PairVocab, Vocab

    payload = load_checkpoint(run)
    try:
        vocab = Vocab(payload["vocab"])
        model_cfg = ModelConfig(**payload["model_config"])
        pairs = PairVocab(vocab, payload["pair_vocab"]["pairs"]) if model_cfg.tokens == "bigram" else None
        model = LanguageModel(len(vocab) if pairs is None else len(pairs), model_cfg)
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, RuntimeError) as error:  # a field missing, renamed or of the wrong shape
        raise ValueError(f"checkpoint {run} does not fit this lstmlm {__version__} (written by lstmlm "
                         f"{payload.get('lstmlm_version')}): {' '.join(str(error).split())[:300]}; retrain, or "
                         f"use the lstmlm version that wrote it") from None
    return payload, model.eval(), vocab, pairs
