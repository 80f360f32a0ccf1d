"""lstmlm.nn: the LSTMP layer, a drop-in for torch.nn.LSTM with peepholes and projection."""
from .lstm import GATES, LSTM, lstmp_layer_reference

__all__ = ["GATES", "LSTM", "lstmp_layer_reference"]
