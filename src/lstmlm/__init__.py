"""lstmlm: character-level LSTM language models with peepholes and projection (LSTMP)."""
__version__ = "0.1.0"

from .data import BatchStream, load_ids, split_ids  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .model import LanguageModel, ModelConfig  # noqa: E402
from .nn import LSTM  # noqa: E402
from .sample import sample_text  # noqa: E402
from .train import PRESETS, TrainConfig, make_configs, resume_training, start_training  # noqa: E402
from .vocab import Vocab  # noqa: E402

__all__ = ["LSTM", "BatchStream", "LanguageModel", "ModelConfig", "PRESETS", "TrainConfig", "Vocab", "__version__",
           "evaluate", "load_ids", "make_configs", "resume_training", "sample_text", "split_ids", "start_training"]
