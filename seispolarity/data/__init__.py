"""Data: on-disk layout readers, the WaveformDataset, the synthetic generator and augmentations."""
from .dataset import WaveformDataset
from .labels import CLASS_NAMES, DOWN, UNKNOWN, UP

__all__ = ["WaveformDataset", "CLASS_NAMES", "UP", "DOWN", "UNKNOWN", "generate_synthetic"]


def __getattr__(name):  # keep `import seispolarity` light: the generator needs scipy
    if name == "generate_synthetic":
        from .synthetic import generate_synthetic

        return generate_synthetic
    raise AttributeError(name)
