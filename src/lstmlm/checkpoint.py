"""Checkpoints: plain data (tensors, numbers, strings) written atomically, loaded without running code.

A checkpoint is one torch.save file read back with torch.load(weights_only=True), which refuses
anything but tensors and plain containers, so a crafted pickle cannot execute code. It carries the
configs, the vocabulary, model and optimizer state, the step, the data cursors, the carried LSTM
state and the RNG state: enough to continue a run exactly.
"""
from __future__ import annotations

import logging
import os
import pickle
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
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"could not write checkpoint {path} ({error.strerror}); "
                                       f"the previous checkpoint, if any, is unchanged") from error
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by save_checkpoint; clear errors for missing, corrupt or unsafe files."""
    path = checkpoint_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: pass a run directory made by `lstmlm train --out` "
                                f"or a checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"refusing to load {path}: it holds objects other than tensors and plain data, "
                         f"which could run code ({str(error).splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"checkpoint {path} is truncated or corrupt ({str(error).splitlines()[0][:200]}); "
                         f"resume from an earlier checkpoint or retrain") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lstmlm checkpoint")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} is checkpoint format version {payload.get('version')}, "
                         f"this lstmlm reads version {VERSION}")
    return payload
