"""The model zoo: one module per published polarity model, all registered by name."""
from .base import MODEL_REGISTRY, PolarityModel, get_model, list_models, register_model
from .ross import Ross
from .ppnet import PPNet

__all__ = ["MODEL_REGISTRY", "PolarityModel", "get_model", "list_models", "register_model", "Ross", "PPNet"]
