"""Training: TrainingConfig, the Trainer, checkpoints and metrics."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainingConfig
from .guards import NonFiniteLossError
from .metrics import confusion_matrix, metrics_from_confusion
from .setup import resolve_device, seed_everything
from .signals import TrainingInterrupted
from .trainer import Trainer

__all__ = ["Trainer", "TrainingConfig", "TrainingInterrupted", "NonFiniteLossError", "CheckpointError",
           "load_checkpoint", "save_checkpoint", "confusion_matrix", "metrics_from_confusion",
           "resolve_device", "seed_everything"]
