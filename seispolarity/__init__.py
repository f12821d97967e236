"""SeisPolarity: deep-learning P-wave first-motion polarity, as a library and a Hydra runner."""
from .data.dataset import WaveformDataset

__version__ = "0.1.0"
__all__ = ["WaveformDataset", "__version__"]
