"""Training: TrainingConfig, the Trainer, checkpoints and metrics."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainingConfig
from .metrics import confusion_matrix, metrics_from_confusion
from .trainer import NonFiniteLossError, Trainer, TrainingInterrupted, resolve_device, seed_everything

__all__ = ["Trainer", "TrainingConfig", "TrainingInterrupted", "NonFiniteLossError", "CheckpointError",
           "load_checkpoint", "save_checkpoint", "confusion_matrix", "metrics_from_confusion",
           "resolve_device", "seed_everything"]
