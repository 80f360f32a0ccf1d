import os
import random

import pytest
import torch

# Without a GPU, the Triton kernels are tested on the CPU in Triton's interpreter. Triton reads this
# when a kernel is defined, so it is set before any test module imports lstmlm's kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def tiny_corpus(tmp_path):
    """A 30,000-character text of random words, written to a file."""
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "away"]
    text = " ".join(rng.choice(words) for _ in range(6000))[:30_000]
    path = tmp_path / "tiny.txt"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Prepared corpora and downloads go to a per-session folder, never the user's cache."""
    monkeypatch.setenv("LSTMLM_HOME", str(tmp_path_factory.getbasetemp() / "lstmlm-home"))
